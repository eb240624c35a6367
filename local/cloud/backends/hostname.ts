import { parse } from 'yaml';

const HOSTNAME = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

/**
 * The hostname a VM boots with: cloud-init's `hostname` from the user data when it sets a valid
 * one (the engine sets the topology's VM name), else the Nova server's name, as on a real cloud.
 */
export function bootHostname(serverName: string, userData: string): string {
  if (userData.trimStart().startsWith('#cloud-config')) {
    try {
      const doc: unknown = parse(userData);
      const wanted = typeof doc === 'object' && doc !== null ? (doc as Record<string, unknown>).hostname : undefined;
      if (typeof wanted === 'string' && HOSTNAME.test(wanted)) return wanted;
    } catch {
      // Unparseable user data: cloud-init skips it; the server's name stands.
    }
  }
  return serverName;
}
