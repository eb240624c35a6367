import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run } from './run.ts';

export const SSHD = '/usr/sbin/sshd';

/** Paths of one sshd instance; everything lives in its own directory under the state dir. */
export interface SshdFiles {
  dir: string;
  config: string;
  hostKey: string;
  pidFile: string;
  log: string;
}

export function sshdFiles(dir: string): SshdFiles {
  return {
    dir,
    config: join(dir, 'sshd_config'),
    hostKey: join(dir, 'ssh_host_ed25519_key'),
    pidFile: join(dir, 'sshd.pid'),
    log: join(dir, 'sshd.log'),
  };
}

/**
 * The server's ed25519 host key, generated on first boot and kept on its "disk" (its state
 * directory) so a restored server keeps it; returns the public line clients pin.
 */
export async function ensureHostKey(files: SshdFiles): Promise<string> {
  await mkdir(files.dir, { recursive: true, mode: 0o700 });
  if (!existsSync(files.hostKey) || !existsSync(`${files.hostKey}.pub`)) {
    await rm(files.hostKey, { force: true });
    await rm(`${files.hostKey}.pub`, { force: true });
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', files.hostKey]);
  }
  const pub = await readFile(`${files.hostKey}.pub`, 'utf8');
  return pub.trim().split(/\s+/).slice(0, 2).join(' ');
}

/**
 * sshd_config for a namespace. Public keys only; `StrictModes no` because keys live under
 * the state dir (often /tmp); `UsePAM no` because no login session is set up in a namespace.
 */
export function renderSshdConfig(
  files: SshdFiles,
  opts: { listenAddress?: string; authorizedKeysFile: string; keysCommand?: { command: string; user: string }; allowTcpForwarding: boolean },
): string {
  return [
    `ListenAddress ${opts.listenAddress ?? '0.0.0.0'}`,
    'Port 22',
    `HostKey ${files.hostKey}`,
    `PidFile ${files.pidFile}`,
    `AuthorizedKeysFile ${opts.authorizedKeysFile}`,
    ...(opts.keysCommand ? [`AuthorizedKeysCommand ${opts.keysCommand.command}`, `AuthorizedKeysCommandUser ${opts.keysCommand.user}`] : []),
    'UsePAM no',
    'StrictModes no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'PermitRootLogin prohibit-password',
    `AllowTcpForwarding ${opts.allowTcpForwarding ? 'yes' : 'no'}`,
    'AllowAgentForwarding no',
    'X11Forwarding no',
    'PermitTunnel no',
    'GatewayPorts no',
    'MaxStartups 100:30:200',
    'Subsystem sftp internal-sftp',
    'LogLevel VERBOSE',
    '',
  ].join('\n');
}

/** sshd's privilege-separation directory must exist before any sshd starts. */
export async function ensurePrivsepDir(): Promise<void> {
  await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
}

/**
 * Starts a long-running process inside a namespace. `ip netns exec` and `unshare` exec in
 * place, so the returned child *is* the daemon: we keep it to wait for it on stop (nothing
 * else reaps it here).
 */
export function spawnInNamespace(ns: string, argv: readonly string[]): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: 'ignore' });
  child.on('error', () => {
    // Reported through the exit/readiness path.
  });
  return child;
}

/** Waits until sshd wrote its PidFile (it does so after binding its socket). */
export async function waitForPidFile(pidFile: string, child: ChildProcess, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(pidFile)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}) before it was ready`);
    }
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** Resolves when the child has exited (immediately if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}
