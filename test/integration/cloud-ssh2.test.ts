import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { utils } from 'ssh2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCloudDriver } from '../../adapters/local/localCloudDriver.ts';
import { renderUserData } from '../../core/cloudInit.ts';
import { VmSchema } from '../../core/deployment/schema.ts';
import { ErrorName, StepError } from '../../core/errors.ts';
import type { CloudContext, VmInfo } from '../../core/ports.ts';
import { Ssh2Backend } from '../../local/cloud/backends/ssh2/index.ts';
import { startLocalCloud, type LocalCloud } from '../../local/cloud/server.ts';
import { SshSession } from '../../sandbox/ssh/session.ts';
import { generateSshKeyPair } from '../../core/crypto/deploymentKey.ts';

// Addresses of this file only, so parallel test files and the demo never collide.
const BASTION = { address: '127.61.0.2', port: 2222, securityGroup: 'bastion', user: 'ctd' };
const VM_BASE = '127.61.1';

const key = generateSshKeyPair('ctd-test');
let stateDir: string;
let cloud: LocalCloud;
let driver: LocalCloudDriver;
let ctx: CloudContext;

async function startCloud(): Promise<void> {
  const backend = new Ssh2Backend({ stateDir, bastion: BASTION, vmAddressBase: VM_BASE, vmPort: 2222 });
  cloud = await startLocalCloud({ stateDir, backend });
  driver = new LocalCloudDriver({ endpoint: cloud.url });
}

function session(opts: { hostKey?: string; retryIntervalMs?: number } = {}): Promise<SshSession> {
  return driver.describeBastion(ctx, 'bastion').then(
    (b) =>
      new SshSession({
        bastion: { name: 'bastion', address: b.address, port: b.port, user: 'ctd', hostKey: opts.hostKey ?? b.hostKey },
        user: 'ctd',
        privateKey: key.privateKey,
        connectTimeoutMs: 3000,
        retryIntervalMs: opts.retryIntervalMs ?? 200,
      }),
  );
}

async function createVm(name: string, userData: object = {}): Promise<VmInfo> {
  return driver.createVm(ctx, VmSchema.parse({ name, network: 'net' }), renderUserData(VmSchema.parse({ name, network: 'net', userData }), key.publicKey));
}

/** A process is gone when it no longer exists or is a zombie waiting for PID 1. */
async function processGone(pid: number): Promise<boolean> {
  try {
    const s = await readFile(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

async function until(check: () => Promise<boolean>, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return check();
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'ctd-cloud-ssh2-'));
  await startCloud();
  const token = await cloud.mintToken('tenant-a');
  ctx = { token, deploymentId: 'dep1' };
  await driver.createNetwork(ctx, { name: 'net' });
});

afterAll(async () => {
  await cloud?.close();
  await rm(stateDir, { recursive: true, force: true });
});

describe('Local cloud (ssh2 backend) through LocalCloudDriver', () => {
  let web1: VmInfo;
  let ruleId: string;

  it('identifies tokens and keeps only their digests, 0600', async () => {
    expect(await driver.identify(ctx.token)).toEqual({ tenantId: 'tenant-a' });
    expect(await driver.identify('not-a-token')).toBeUndefined();
    const file = join(stateDir, 'cloud', 'identity.json');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect(await readFile(file, 'utf8')).not.toContain(ctx.token);
  });

  it('bastion refuses a source before a rule admits it, and accepts after', async () => {
    web1 = await createVm('web1');
    expect(web1.address).toBe(`${VM_BASE}.10`);
    const before = await session();
    await expect(before.exec(web1, 'true', () => undefined)).rejects.toThrow(
      `the bastion ${BASTION.address}:2222 refused the connection (is bastion access open?)`,
    );
    before.closeAll();

    const cidr = await driver.egressCidr(ctx);
    ({ ruleId } = await driver.addBastionRule(ctx, { securityGroup: 'bastion', cidr, port: 2222, description: 'ctd:dep1' }));
    await driver.setBastionForwarding(ctx, { securityGroup: 'bastion', enabled: true });
    const s = await session();
    await s.waitForSsh(web1, 5000);
    const lines: string[] = [];
    const code = await s.exec(web1, 'echo "$HOSTNAME $SSH_CONNECTION"; pwd; echo oops >&2; exit 3', (stream, text) => lines.push(`${stream}:${text}`));
    expect(code).toBe(3);
    expect(lines[0]).toMatch(new RegExp(`^stdout:web1 ${BASTION.address.replace(/\./g, '\\.')} \\d+ ${web1.address} 2222$`));
    expect(lines[1]).toBe(`stdout:${join(stateDir, 'cloud', 'vms', 'tenant-a', 'dep1', 'web1', 'home')}`);
    expect(lines).toContain('stderr:oops');
    s.closeAll();
  });

  it('pushes files over SFTP into the VM home, creating directories', async () => {
    const s = await session();
    await s.push(web1, { 'app/conf/a.txt': 'alpha\n', 'b.txt': 'beta' });
    const out: string[] = [];
    expect(await s.exec(web1, 'cat app/conf/a.txt b.txt', (_s, t) => out.push(t))).toBe(0);
    expect(out).toEqual(['alpha', 'beta']);
    await expect(s.push(web1, { '../escape.txt': 'x' })).rejects.toThrow(/inside the home/);
    s.closeAll();
  });

  it('refuses a bastion whose host key does not match the pinned one', async () => {
    const s = await session({ hostKey: utils.generateKeyPairSync('ed25519').public });
    await expect(s.exec(web1, 'true', () => undefined)).rejects.toThrow(`host key of the bastion ${BASTION.address}:2222 does not match`);
    s.closeAll();
  });

  it('refuses a VM whose host key does not match', async () => {
    const s = await session();
    const wrong = { ...web1, hostKey: utils.generateKeyPairSync('ed25519').public };
    await expect(s.waitForSsh(wrong, 3000)).rejects.toThrow(`host key of web1 (${web1.address}:2222) does not match`);
    s.closeAll();
  });

  it('says clearly when forwarding is off', async () => {
    await driver.setBastionForwarding(ctx, { securityGroup: 'bastion', enabled: false });
    const s = await session();
    await expect(s.exec(web1, 'true', () => undefined)).rejects.toThrow(
      'the bastion refused to forward to web1 (TCP forwarding is off: administratively prohibited)',
    );
    s.closeAll();
    await driver.setBastionForwarding(ctx, { securityGroup: 'bastion', enabled: true });
  });

  it('a VM whose bootcmd fails never gets the key: the bootstrap check times out', async () => {
    const broken = await createVm('broken', { bootcmd: ['exit 1'] });
    const s = await session();
    try {
      const started = Date.now();
      const err = await s.waitForSsh(broken, 1500, 180).catch((e: unknown) => e);
      // The injected 1.5 s limit is the behaviour under test; the margin absorbs a loaded machine.
      expect(Date.now() - started).toBeLessThan(6000);
      expect(err).toBeInstanceOf(StepError);
      expect((err as StepError).errorName).toBe(ErrorName.VmBootstrapTimeout);
      expect((err as StepError).message).toMatch(/^broken was not reachable over SSH through the bastion within 180 s; log in to the VM/);
      // Why: the VM answers SSH but refuses the key (the last bounded attempt may have been cut short, so ask again).
      await expect(s.exec(broken, 'true', () => undefined)).rejects.toThrow(/rejected the deployment key/);
    } finally {
      s.closeAll();
      await driver.deleteVm(ctx, 'broken');
    }
  });

  it('keeps open sessions after the rule is deleted but refuses new connections', async () => {
    const open = await session();
    await open.waitForSsh(web1, 5000);
    await driver.deleteBastionRule(ctx, { securityGroup: 'bastion', ruleId });
    await driver.deleteBastionRule(ctx, { securityGroup: 'bastion', ruleId }); // already gone: fine
    expect(await open.exec(web1, 'true', () => undefined)).toBe(0);
    open.closeAll();
    const fresh = await session();
    await expect(fresh.exec(web1, 'true', () => undefined)).rejects.toThrow('refused the connection (is bastion access open?)');
    fresh.closeAll();
    const cidr = await driver.egressCidr(ctx);
    ({ ruleId } = await driver.addBastionRule(ctx, { securityGroup: 'bastion', cidr, port: 2222, description: 'ctd:dep1' }));
  });

  it('kills processes a command left running when the VM is deleted', async () => {
    const tmp = await createVm('tmp1');
    const s = await session();
    await s.waitForSsh(tmp, 5000);
    const out: string[] = [];
    expect(await s.exec(tmp, 'nohup sleep 300 > /dev/null 2>&1 & echo $!', (_s, t) => out.push(t))).toBe(0);
    const pid = Number(out[0]);
    expect(await processGone(pid)).toBe(false);
    s.closeAll();
    await driver.deleteVm(ctx, 'tmp1');
    expect(await until(() => processGone(pid))).toBe(true);
    expect((await driver.describeVms(ctx)).map((v) => v.name)).toEqual(['web1']);
  });

  it('keeps rules, VMs and host keys across a restart, and kills VM processes on stop', async () => {
    const s = await session();
    const out: string[] = [];
    await s.exec(web1, 'nohup sleep 300 > /dev/null 2>&1 & echo $!', (_s, t) => out.push(t));
    s.closeAll();
    const pid = Number(out[0]);
    await cloud.close();
    expect(await until(() => processGone(pid))).toBe(true);

    await startCloud();
    const [again] = await driver.describeVms(ctx);
    expect(again).toMatchObject({ name: 'web1', address: web1.address, hostKey: web1.hostKey, status: 'active' });
    const after = await session();
    const lines: string[] = [];
    expect(await after.exec(web1, 'cat b.txt', (_s, t) => lines.push(t))).toBe(0);
    expect(lines).toEqual(['beta']);
    after.closeAll();
  });

  it('maps an injected 503 to Ctd.BackendUnreachable and other failures to Ctd.ProvisioningError', async () => {
    await fetch(`${cloud.url}/_faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: 'POST', pathPattern: '/vms$', status: 503, times: 1, message: 'The backend server is unreachable' }),
    });
    const err = await createVm('web9').catch((e: unknown) => e);
    expect(err).toMatchObject({ errorName: ErrorName.BackendUnreachable });
    expect((err as Error).message).toMatch(/^The backend server is unreachable \(creating VM "web9"/);
    expect((err as Error).message).not.toContain(ctx.token);

    const dup = await createVm('web1').catch((e: unknown) => e);
    expect(dup).toMatchObject({ errorName: ErrorName.ProvisioningError });
    expect((dup as Error).message).toMatch(/^creating VM "web1" failed: HTTP 409/);

    const down = new LocalCloudDriver({ endpoint: 'http://127.0.0.1:1' });
    await expect(down.describeVms(ctx)).rejects.toMatchObject({ errorName: ErrorName.BackendUnreachable });
  });

  it('scopes VMs by tenant', async () => {
    const other = { token: await cloud.mintToken('tenant-b'), deploymentId: 'dep1' };
    expect(await driver.describeVms(other)).toEqual([]);
  });
});
