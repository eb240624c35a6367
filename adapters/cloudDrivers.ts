import { splitList } from '../core/config/schema.ts';
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

/**
 * The cloud settings of an environment: CTD_CLOUD, CTD_KEYSTONE_URL, CTD_EGRESS_ADDRESSES,
 * CTD_OS_INTERFACE, CTD_OS_REGION. They are validated once, at start-up, by the `cloud` section of
 * the configuration schema (core/config/schema.ts); this only reads them.
 */
export function cloudConfigFromEnv(env: Record<string, string | undefined>): CloudConfig {
  return {
    kind: env.CTD_CLOUD || 'openstack',
    keystoneUrl: env.CTD_KEYSTONE_URL ?? '',
    egressAddresses: splitList(env.CTD_EGRESS_ADDRESSES),
    ...(env.CTD_OS_INTERFACE ? { interface: env.CTD_OS_INTERFACE } : {}),
    ...(env.CTD_OS_REGION ? { region: env.CTD_OS_REGION } : {}),
  };
}

/**
 * The driver for a cloud config that passed the schema. A process whose catalog entry has no
 * `cloud` section has no Keystone URL, and building its driver is a programming error said plainly.
 */
export function cloudDriverFor(config: CloudConfig): CloudDriver {
  if (!config.keystoneUrl) throw new Error('this process has no cloud configuration (CTD_KEYSTONE_URL): its catalog entry lacks the cloud section');
  return new OpenStackDriver({
    keystoneUrl: config.keystoneUrl,
    egressCidrs: config.egressAddresses,
    ...(config.interface ? { interface: config.interface } : {}),
    ...(config.region ? { region: config.region } : {}),
  });
}
