import { accessSync, constants } from 'node:fs';

/**
 * What the netns e2e suites need. Locally a missing prerequisite skips the suite with a plain
 * explanation; under CI (process.env.CI set) it fails the suite, so a broken test bed can never
 * pass silently.
 */
const BINARIES: { path: string; pkg: string }[] = [
  { path: '/usr/sbin/ip', pkg: 'iproute2' },
  { path: '/usr/sbin/nft', pkg: 'nftables' },
  { path: '/usr/sbin/sshd', pkg: 'openssh-server' },
  { path: '/usr/bin/ssh', pkg: 'openssh-client' },
  { path: '/usr/bin/ssh-keygen', pkg: 'openssh-client' },
  { path: '/usr/bin/unshare', pkg: 'util-linux' },
  { path: '/usr/bin/python3', pkg: 'python3' },
  { path: '/usr/bin/ansible-playbook', pkg: 'ansible-core' },
];

export interface Prerequisites {
  ok: boolean;
  missing: string[];
  /** A human explanation with the fix; empty when ok. */
  explanation: string;
}

export function checkPrerequisites(opts: { ansible?: boolean } = {}): Prerequisites {
  const missing: string[] = [];
  const packages = new Set<string>();
  if (process.platform !== 'linux') missing.push('Linux (network namespaces)');
  if (process.getuid?.() !== 0) missing.push('root (namespaces, nftables and sshd need it)');
  for (const b of BINARIES) {
    if (!opts.ansible && b.pkg === 'ansible-core') continue;
    try {
      accessSync(b.path, constants.X_OK);
    } catch {
      missing.push(b.path);
      packages.add(b.pkg);
    }
  }
  const install = packages.size > 0 ? ` Install with: sudo .ci/install-testbed.sh (apt-get install -y --no-install-recommends ${[...packages].join(' ')}).` : '';
  const explanation = missing.length === 0 ? '' : `netns e2e suite needs: ${missing.join(', ')}.${install}`;
  return { ok: missing.length === 0, missing, explanation };
}

/**
 * Returns whether the suite should run. Prints why not; throws under CI, where missing
 * prerequisites are a failure rather than a skip.
 */
export function requirePrerequisites(opts: { ansible?: boolean } = {}): boolean {
  const p = checkPrerequisites(opts);
  if (p.ok) return true;
  if (process.env.CI) throw new Error(`CI is set and the test bed is incomplete — ${p.explanation}`);
  console.warn(`[skipped] ${p.explanation}`);
  return false;
}
