import { splitList } from '../core/config/schema.ts';

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
 * the configuration schema (core/config/schema.ts); this only reads them. Apart from the drivers
 * (cloudDrivers.ts) so reading them loads no driver.
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
