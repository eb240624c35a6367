import type { CloudDriver } from '../core/ports.ts';
import { LocalCloudDriver } from './local/localCloudDriver.ts';

/** Which cloud the engine acts on, and where its API is. */
export interface CloudConfig {
  kind: string;
  endpoint: string;
}

/**
 * Both local backends (ssh2 on loopback, netns with OpenSSH) sit behind the local cloud's
 * REST API, so one client serves them. OpenStack and EC2 drivers come later.
 */
export function cloudDriverFor(config: CloudConfig): CloudDriver {
  switch (config.kind) {
    case 'local':
    case 'netns':
      if (!config.endpoint) throw new Error(`the ${config.kind} cloud needs CTD_CLOUD_ENDPOINT`);
      return new LocalCloudDriver({ endpoint: config.endpoint });
    default:
      throw new Error(`cloud driver "${config.kind}" is not available in this version (available: local, netns)`);
  }
}
