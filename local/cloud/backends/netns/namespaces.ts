import { setTimeout as sleep } from 'node:timers/promises';
import { run } from './run.ts';

/**
 * Network-namespace plumbing. Every command names its namespace explicitly (`ip -n NS`,
 * `ip netns exec NS`), so nothing here ever touches the machine's own interfaces or routes.
 */

export async function listNamespaces(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name.length > 0);
}

/** Creates a namespace with its loopback up (local services are reached through 127.0.0.1). */
export async function createNamespace(ns: string): Promise<void> {
  await run('ip', ['netns', 'add', ns]);
  await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
}

export async function namespacePids(ns: string): Promise<number[]> {
  const { stdout } = await run('ip', ['netns', 'pids', ns], { allowFailure: true });
  return stdout
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => Number.isInteger(n) && n > 0 && n !== process.pid);
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // Already gone.
  }
}

/**
 * Ends every process living in the namespace: SIGTERM, a short grace, then SIGKILL. A namespace
 * can only be deleted cleanly once nothing runs in it, and sshd sessions or a VM's background
 * runcmd would otherwise outlive the run.
 */
export async function killNamespaceProcesses(ns: string, graceMs = 500): Promise<void> {
  let pids = await namespacePids(ns);
  if (pids.length === 0) return;
  for (const pid of pids) signal(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline) {
    await sleep(25);
    pids = await namespacePids(ns);
    if (pids.length === 0) return;
  }
  for (const pid of pids) signal(pid, 'SIGKILL');
  for (let i = 0; i < 40 && (await namespacePids(ns)).length > 0; i++) await sleep(25);
}

/** Kills what runs in the namespace and deletes it; its veths and nftables tables go with it. */
export async function deleteNamespace(ns: string): Promise<void> {
  await killNamespaceProcesses(ns);
  await run('ip', ['netns', 'del', ns], { allowFailure: true });
}

/** Creates a veth pair with one end in each namespace (never in the root namespace). */
export async function createVethPair(input: { ns: string; name: string; peerNs: string; peerName: string }): Promise<void> {
  await run('ip', ['-n', input.ns, 'link', 'add', input.name, 'type', 'veth', 'peer', 'name', input.peerName, 'netns', input.peerNs]);
}

/** `ip -n NS …` — a command scoped to one namespace. */
export function ipIn(ns: string, ...args: string[]): Promise<unknown> {
  return run('ip', ['-n', ns, ...args]);
}
