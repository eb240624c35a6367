import type { CloudDriver } from '../core/ports.ts';
import { OpenStackDriver } from './openstack/driver.ts';

/** Which cloud the engine acts on and how to reach it (docs/OPENSTACK.md, "Configuration"). */
export interface CloudConfig {
  /** `openstack`, the only kind. */
  kind: string;
  /** Keystone v3 base URL (CTD_KEYSTONE_URL). */
  keystoneUrl: string;
  /** Addresses or CIDRs the engine's sandboxes reach the bastion from (CTD_EGRESS_ADDRESSES). */
  egressAddresses: string[];
  /** Catalog interface (CTD_OS_INTERFACE), default `public`. */
  interface?: string;
  /** Catalog region (CTD_OS_REGION), default the first endpoint of the interface. */
  region?: string;
}

export const CLOUD_KINDS = ['openstack'] as const;

/**
 * The cloud settings from the environment, in one place (the engine's zod configuration schema
 * folds these in): CTD_CLOUD, CTD_KEYSTONE_URL, CTD_EGRESS_ADDRESSES, CTD_OS_INTERFACE, CTD_OS_REGION.
 */
export function cloudConfigFromEnv(env: NodeJS.ProcessEnv): CloudConfig {
  const list = (value: string | undefined) => (value ?? '').split(',').map((a) => a.trim()).filter(Boolean);
  return {
    kind: env.CTD_CLOUD || 'openstack',
    keystoneUrl: env.CTD_KEYSTONE_URL ?? '',
    egressAddresses: list(env.CTD_EGRESS_ADDRESSES),
    ...(env.CTD_OS_INTERFACE ? { interface: env.CTD_OS_INTERFACE } : {}),
    ...(env.CTD_OS_REGION ? { region: env.CTD_OS_REGION } : {}),
  };
}

/** The driver for a cloud config; an unknown kind or a missing Keystone URL is a clear error. */
export function cloudDriverFor(config: CloudConfig): CloudDriver {
  if (config.kind !== 'openstack') {
    throw new Error(`CTD_CLOUD "${config.kind}" is not a cloud kind this engine knows (known: ${CLOUD_KINDS.join(', ')})`);
  }
  if (!config.keystoneUrl) throw new Error('the openstack cloud needs CTD_KEYSTONE_URL (the Keystone v3 URL, e.g. https://iam.example.com/v3)');
  try {
    new URL(config.keystoneUrl);
  } catch {
    throw new Error(`CTD_KEYSTONE_URL "${config.keystoneUrl}" is not a URL`);
  }
  const bad = config.egressAddresses.find((a) => !/^([0-9]{1,3}(\.[0-9]{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)(\/[0-9]{1,3})?$/.test(a));
  if (bad !== undefined) throw new Error(`CTD_EGRESS_ADDRESSES: "${bad}" is not an IP address or CIDR`);
  return new OpenStackDriver({
    keystoneUrl: config.keystoneUrl,
    egressCidrs: config.egressAddresses,
    ...(config.interface ? { interface: config.interface } : {}),
    ...(config.region ? { region: config.region } : {}),
  });
}
