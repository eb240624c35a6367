import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import type { ServerSpec } from '../../../local/cloud-backend.ts';
import { NetnsHypervisor } from '../../../local/cloud/backends/netns/index.ts';
import { generateDeploymentKey } from '../../../core/crypto/deploymentKey.ts';

const execFileAsync = promisify(execFile);

/** The tenant (Keystone project) the e2e helpers act for. */
export const TENANT = 'tenant-e2e';

/** The local cloud's login name; on the netns bed it is another name for root (see logins.ts). */
export const LOGIN = 'ctd';

export interface NetnsBed {
  hypervisor: NetnsHypervisor;
  prefix: string;
  stateDir: string;
  /** Tears the hypervisor down and removes the state dir. */
  close(): Promise<void>;
}

/** Starts a netns hypervisor with a fresh prefix ('ctd' + 4 hex) and state dir. */
export async function startNetnsBed(): Promise<NetnsBed & { bringUpMs: number }> {
  const prefix = `ctd${randomBytes(2).toString('hex')}`;
  const stateDir = await mkdtemp(join(tmpdir(), 'ctd-netns-'));
  const hypervisor = new NetnsHypervisor({ stateDir, prefix });
  const t0 = Date.now();
  await hypervisor.start();
  const bringUpMs = Date.now() - t0;
  return {
    hypervisor,
    prefix,
    stateDir,
    bringUpMs,
    close: async () => {
      await hypervisor.stop();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** An OpenSSH key pair on disk (0600), as a deployment's key would be. */
export interface KeyFiles {
  publicKey: string;
  keyFile: string;
}

export async function keyFiles(dir: string, name: string): Promise<KeyFiles> {
  const key = generateDeploymentKey(name);
  const keyFile = join(dir, `${name}.key`);
  await writeFile(keyFile, key.privateKey, { mode: 0o600 });
  return { publicKey: key.publicKey.trim(), keyFile };
}

/** `#cloud-config` user data as the driver sends it: the deployment key plus the VM's additions. */
export function cloudConfig(publicKey: string, extra: Record<string, unknown> = {}): string {
  return `#cloud-config\n${stringify({ ssh_authorized_keys: [publicKey], ...extra }, { lineWidth: 0 })}`;
}

export interface Subnet {
  id: string;
  subnetId: string;
  cidr: string;
  gatewayIp: string | null;
}

export function subnet(cidr: string, gatewayIp: string | null = cidr.replace(/\.0\/\d+$/, '.1')): Subnet {
  return { id: randomUUID(), subnetId: randomUUID(), cidr, gatewayIp };
}

export function serverSpec(projectId: string, name: string, net: Subnet, fixedIp: string, userData: string): ServerSpec {
  return { id: randomUUID(), projectId, name, fixedIp, network: net, userData };
}

export interface SshResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Writes a known_hosts file pinning each address to its host key. */
export async function knownHosts(file: string, hosts: { address: string; hostKey: string }[]): Promise<string> {
  await writeFile(file, hosts.map((h) => `${h.address} ${h.hostKey}\n`).join(''), { mode: 0o600 });
  return file;
}

/**
 * Runs the OpenSSH client inside the bed's host namespace (where sandboxes run). Short connect
 * timeouts: a refused bastion must fail the test in seconds, not minutes.
 */
export function sshFromHost(bed: NetnsBed, args: string[], timeoutMs = 20_000): Promise<SshResult> {
  return new Promise((resolve) => {
    const [file, ...prefixArgs] = bed.hypervisor.sandboxCommandPrefix() as [string, ...string[]];
    // A jump brings its own config file (-F); otherwise none, and a connect timeout long enough for a loaded machine.
    const defaults = args.includes('-F') ? [] : ['-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=5'];
    const child = spawn(file, [...prefixArgs, 'ssh', ...defaults, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
    }).on('error', () => undefined);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** ssh options pinning host keys and using one key, for the bastion and for a hop through it. */
export function sshOptions(key: KeyFiles, known: string): string[] {
  return ['-i', key.keyFile, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${known}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes'];
}

/** A real `ssh -J` hop: the jump reads the same options through a generated config file, since -J drops -i/-o. */
export async function jumpArgs(dir: string, key: KeyFiles, known: string, bastion: string, user = LOGIN): Promise<string[]> {
  const config = join(dir, `jump-${randomBytes(3).toString('hex')}.conf`);
  await writeFile(
    config,
    [
      // The hop's own connect fails fast when the bastion drops it; the whole exchange through it may take longer.
      `Host ${bastion}`,
      '  ConnectTimeout 5',
      'Host *',
      `  IdentityFile ${key.keyFile}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${known}`,
      '  StrictHostKeyChecking yes',
      '  BatchMode yes',
      '  ConnectTimeout 15',
      '',
    ].join('\n'),
  );
  return ['-F', config, '-J', `${user}@${bastion}`];
}

/** Polls until the VM's sshd answers a login (its user data may still be running when it is ACTIVE). */
export async function waitForLogin(run: () => Promise<SshResult>, timeoutMs = 15_000): Promise<SshResult> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await run();
    if (r.code === 0 || Date.now() > deadline) return r;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Pids (with their command lines) living in a namespace. */
export async function namespaceProcesses(ns: string): Promise<{ pid: number; cmd: string }[]> {
  const { stdout } = await execFileAsync('ip', ['netns', 'pids', ns]).catch(() => ({ stdout: '' }));
  const pids = stdout.split('\n').map(Number).filter((n) => Number.isInteger(n) && n > 0);
  const out: { pid: number; cmd: string }[] = [];
  for (const pid of pids) out.push({ pid, cmd: (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replace(/\0/g, ' ').trim() });
  return out;
}

/** Whether a process with this command line still runs anywhere on the machine. */
export async function processRunning(cmdline: string): Promise<number[]> {
  const found: number[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).replace(/\0/g, ' ').trim();
    const state = (await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')).replace(/^.*\) /s, '')[0];
    if (cmd === cmdline && state !== 'Z') found.push(Number(pid));
  }
  return found;
}

/**
 * What a run may leave behind, by prefix: namespaces, its /run keys-command directory, nftables
 * tables (root namespace, read only), and processes whose command line names the prefix or the
 * state dir.
 */
export async function leftovers(prefix: string, stateDir: string): Promise<string[]> {
  const found: string[] = [];
  const { stdout: ns } = await execFileAsync('ip', ['netns', 'list']);
  for (const line of ns.split('\n')) if (line.startsWith(`${prefix}-`)) found.push(`namespace ${line.split(' ')[0]}`);
  const { stdout: tables } = await execFileAsync('nft', ['list', 'tables']);
  for (const line of tables.split('\n')) if (line.includes(prefix)) found.push(`nft ${line.trim()}`);
  if (existsSync(`/run/ctd-netns/${prefix}`)) found.push(`directory /run/ctd-netns/${prefix}`);
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const text = cmdline.replace(/\0/g, ' ');
    if (text.includes(stateDir) || text.includes(`${prefix}-`) || text.includes(`/run/ctd-netns/${prefix}/`)) {
      if (!text.includes('vitest')) found.push(`process ${pid}: ${text.slice(0, 120)}`);
    }
  }
  return found;
}
