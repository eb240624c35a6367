import type { CloudConfig } from './cloudConfig.ts';
import type { CloudDriver } from '../core/ports.ts';
import { OpenStackDriver } from './openstack/driver.ts';

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
