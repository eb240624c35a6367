import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { renderUserData } from '../../../core/cloudInit.ts';
import type { VmSpec } from '../../../core/deployment/schema.ts';
import type { CloudContext, CloudDriver, VmInfo } from '../../../core/ports.ts';
import type { CloudScope } from '../../../local/cloud-backend.ts';
import { NetnsBackend } from '../../../local/cloud/backends/netns/index.ts';
import type { DeploymentKey } from '../../../sandbox/actions/types.ts';
import { generateDeploymentKey } from '../../../core/crypto/deploymentKey.ts';


const execFileAsync = promisify(execFile);

export const TENANT = 'tenant-e2e';

export interface NetnsBed {
  backend: NetnsBackend;
  prefix: string;
  stateDir: string;
  /** Tears the backend down and removes the state dir. */
  close(): Promise<void>;
}

/** Starts a netns backend with a fresh prefix ('ctd' + 4 hex) and state dir. */
export async function startNetnsBed(): Promise<NetnsBed & { bringUpMs: number }> {
  const prefix = `ctd${randomBytes(2).toString('hex')}`;
  const stateDir = await mkdtemp(join(tmpdir(), 'ctd-netns-'));
  const backend = new NetnsBackend({ stateDir, prefix });
  const t0 = Date.now();
  await backend.start();
  const bringUpMs = Date.now() - t0;
  return {
    backend,
    prefix,
    stateDir,
    bringUpMs,
    close: async () => {
      await backend.stop();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

export function deploymentKey(deploymentId: string): DeploymentKey {
  return generateDeploymentKey(deploymentId);
}

export function scopeOf(deploymentId: string): CloudScope {
  return { tenantId: TENANT, deploymentId };
}

/** A thin CloudDriver over the backend, as the local cloud's REST client would present it. */
export function driverFor(backend: NetnsBackend): CloudDriver {
  const scope = (ctx: CloudContext): CloudScope => scopeOf(ctx.deploymentId);
  return {
    identify: async () => ({ tenantId: TENANT }),
    describeBastion: (_ctx, sg) => backend.describeBastion(sg),
    egressCidr: () => backend.egressCidr(),
    addBastionRule: (ctx, input) => backend.addBastionRule(scope(ctx), input),
    deleteBastionRule: (ctx, input) => backend.deleteBastionRule(scope(ctx), input),
    setBastionForwarding: (_ctx, input) => backend.setBastionForwarding(input),
    createNetwork: (ctx, spec) => backend.createNetwork(scope(ctx), spec),
    deleteNetwork: (ctx, name) => backend.deleteNetwork(scope(ctx), name),
    createSecurityGroup: (ctx, spec) => backend.createSecurityGroup(scope(ctx), spec),
    deleteSecurityGroup: (ctx, name) => backend.deleteSecurityGroup(scope(ctx), name),
    createVm: (ctx, spec, userData) => backend.createVm(scope(ctx), spec, userData),
    deleteVm: (ctx, name) => backend.deleteVm(scope(ctx), name),
    describeVms: (ctx) => backend.describeVms(scope(ctx)),
  };
}

export function vmSpec(name: string, userData?: VmSpec['userData']): VmSpec {
  return { name, network: 'private', securityGroups: [], ...(userData ? { userData } : {}) };
}

/** Creates VMs with the engine's own user data rendering and waits until their sshd listens. */
export async function createVms(backend: NetnsBackend, deploymentId: string, key: DeploymentKey, specs: VmSpec[]): Promise<VmInfo[]> {
  const scope = scopeOf(deploymentId);
  await Promise.all(specs.map((s) => backend.createVm(scope, s, renderUserData(s, key.publicKey))));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const vms = (await backend.describeVms(scope)).filter((v) => specs.some((s) => s.name === v.name));
    if (vms.every((v) => v.status === 'active')) return vms;
    if (vms.some((v) => v.status === 'error')) throw new Error(`VM failed to boot: ${JSON.stringify(vms)}`);
    if (Date.now() > deadline) throw new Error(`VMs not active after 10 s: ${JSON.stringify(vms)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export interface SshResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** OpenSSH client files for a deployment key: private key (0600) and pinned known_hosts. */
export async function clientFiles(dir: string, key: DeploymentKey, hosts: { address: string; hostKey: string }[]): Promise<{ keyFile: string; knownHosts: string }> {
  const keyFile = join(dir, 'id_ed25519');
  const knownHosts = join(dir, 'known_hosts');
  await writeFile(keyFile, key.privateKey, { mode: 0o600 });
  await writeFile(knownHosts, hosts.map((h) => `${h.address} ${h.hostKey}\n`).join(''), { mode: 0o600 });
  return { keyFile, knownHosts };
}

/**
 * Runs the OpenSSH client inside the bed's host namespace (where sandboxes run). Short connect
 * timeouts: a refused bastion must fail the test in seconds, not minutes.
 */
export function sshFromHost(bed: NetnsBed, args: string[], timeoutMs = 15_000): Promise<SshResult> {
  return new Promise((resolve) => {
    const [file, ...prefixArgs] = bed.backend.sandboxCommandPrefix() as [string, ...string[]];
    const child = spawn(file, [...prefixArgs, 'ssh', '-F', '/dev/null', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=2', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
    }).on('error', () => undefined);
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  }).then((r) => r as SshResult);
}

/** ssh options for a hop through the bastion with the same key and known_hosts (ProxyCommand: -J would drop -i/-o). */
export function viaBastion(files: { keyFile: string; knownHosts: string }, bastionAddress: string): string[] {
  const common = ['-i', files.keyFile, '-o', `UserKnownHostsFile=${files.knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes'];
  const proxy = `ssh -F /dev/null ${common.join(' ')} -o ConnectTimeout=2 -W %h:%p root@${bastionAddress}`;
  return [...common, '-o', `ProxyCommand=${proxy}`];
}

/**
 * What a run may leave behind, by prefix: namespaces, nftables tables (root namespace, read
 * only), and processes whose command line names the prefix or the state dir.
 */
export async function leftovers(prefix: string, stateDir: string): Promise<string[]> {
  const found: string[] = [];
  const { stdout: ns } = await execFileAsync('ip', ['netns', 'list']);
  for (const line of ns.split('\n')) if (line.startsWith(`${prefix}-`)) found.push(`namespace ${line.split(' ')[0]}`);
  const { stdout: tables } = await execFileAsync('nft', ['list', 'tables']);
  for (const line of tables.split('\n')) if (line.includes(prefix)) found.push(`nft ${line.trim()}`);
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const text = cmdline.replace(/\0/g, ' ');
    if (text.includes(stateDir) || text.includes(`${prefix}-`)) {
      if (/sshd|ansible|ssh |node|unshare|python/.test(text)) found.push(`process ${pid}: ${text.slice(0, 120)}`);
    }
  }
  return found;
}
