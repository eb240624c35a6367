import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsBackend } from '../../local/cloud/backends/netns/index.ts';
import type { DeploymentKey } from '../../sandbox/actions/types.ts';
import { requirePrerequisites } from './helpers/prerequisites.ts';
import {
  clientFiles,
  createVms,
  deploymentKey,
  leftovers,
  scopeOf,
  sshFromHost,
  startNetnsBed,
  viaBastion,
  vmSpec,
  type NetnsBed,
} from './helpers/netnsBed.ts';

const execFileAsync = promisify(execFile);
const runSuite = requirePrerequisites();
const DEPLOYMENT = 'dep-backend';
const scope = scopeOf(DEPLOYMENT);

describe.skipIf(!runSuite)('Class: NetnsBackend (real OpenSSH in network namespaces)', () => {
  let bed: NetnsBed;
  let key: DeploymentKey;
  let client: { keyFile: string; knownHosts: string };
  let bastionAddress: string;

  beforeAll(async () => {
    const started = await startNetnsBed();
    bed = started;
    console.log(`netns bring-up: ${started.bringUpMs} ms (prefix ${bed.prefix})`);
    key = deploymentKey(DEPLOYMENT);
    const t0 = Date.now();
    const vms = await createVms(bed.backend, DEPLOYMENT, key, [
      vmSpec('web1', { write_files: [{ path: '/srv/motd', content: 'hello from user data\n' }] }),
      vmSpec('broken', { bootcmd: ['exit 3'] }),
    ]);
    console.log(`two VMs active: ${Date.now() - t0} ms`);
    const bastion = await bed.backend.describeBastion('bastion');
    bastionAddress = bastion.address;
    client = await clientFiles(bed.stateDir, key, [bastion, ...vms]);
  });

  afterAll(async () => {
    if (!bed) return;
    const t0 = Date.now();
    await bed.close();
    console.log(`netns teardown: ${Date.now() - t0} ms`);
    expect(await leftovers(bed.prefix, bed.stateDir)).toEqual([]);
  });

  const sshBastion = (): ReturnType<typeof sshFromHost> =>
    sshFromHost(bed, ['-i', client.keyFile, '-o', `UserKnownHostsFile=${client.knownHosts}`, '-o', 'StrictHostKeyChecking=yes', `root@${bastionAddress}`, 'true']);
  const sshVm = (address: string, command: string): ReturnType<typeof sshFromHost> =>
    sshFromHost(bed, [...viaBastion(client, bastionAddress), `root@${address}`, command]);
  const vmAddress = async (name: string): Promise<string> => (await bed.backend.describeVms(scope)).find((v) => v.name === name)!.address;

  it('reports the bastion with its host key and the host namespace as the egress address', async () => {
    const bastion = await bed.backend.describeBastion('bastion');
    expect(bastion.hostKey).toMatch(/^ssh-ed25519 AAAA\S+$/);
    expect(await bed.backend.egressCidr()).toMatch(/^\d+\.\d+\.\d+\.\d+\/32$/);
    expect(bed.backend.sandboxCommandPrefix()).toEqual(['ip', 'netns', 'exec', `${bed.prefix}-host`]);
  });

  it('refuses the host namespace until a rule admits it, and refuses new connections once the rule is deleted', async () => {
    const before = await sshBastion();
    expect(before.code).toBe(255);
    expect(before.stderr).toMatch(/timed out/);

    const cidr = await bed.backend.egressCidr();
    const { ruleId } = await bed.backend.addBastionRule(scope, { securityGroup: 'bastion', cidr, port: 22, description: 'e2e' });
    expect((await sshBastion()).code).toBe(0);

    await bed.backend.deleteBastionRule(scope, { securityGroup: 'bastion', ruleId });
    const after = await sshBastion();
    expect(after.code).toBe(255);
    expect(after.stderr).toMatch(/timed out/);
  });

  it('refuses to jump while forwarding is off ("administratively prohibited") and jumps once it is on', async () => {
    const cidr = await bed.backend.egressCidr();
    const { ruleId } = await bed.backend.addBastionRule(scope, { securityGroup: 'bastion', cidr, port: 22, description: 'e2e' });
    try {
      const web1 = await vmAddress('web1');
      const off = await sshVm(web1, 'hostname');
      expect(off.code).toBe(255);
      expect(off.stderr).toMatch(/administratively prohibited/);

      await bed.backend.setBastionForwarding({ securityGroup: 'bastion', enabled: true });
      const on = await sshVm(web1, 'hostname; cat /srv/motd; cat /var/log/cloud-init-output.log');
      expect(on.stderr).toBe('');
      expect(on.stdout).toContain('web1\nhello from user data\n');
    } finally {
      await bed.backend.setBastionForwarding({ securityGroup: 'bastion', enabled: false });
      await bed.backend.deleteBastionRule(scope, { securityGroup: 'bastion', ruleId });
    }
  });

  it('never installs the key on a VM whose bootcmd fails', async () => {
    const cidr = await bed.backend.egressCidr();
    const { ruleId } = await bed.backend.addBastionRule(scope, { securityGroup: 'bastion', cidr, port: 22, description: 'e2e' });
    await bed.backend.setBastionForwarding({ securityGroup: 'bastion', enabled: true });
    try {
      const broken = (await bed.backend.describeVms(scope)).find((v) => v.name === 'broken')!;
      // Like a cloud: the instance is up, only cloud-init failed.
      expect(broken.status).toBe('active');
      const r = await sshVm(broken.address, 'true');
      expect(r.code).toBe(255);
      expect(r.stderr).toMatch(/Permission denied \(publickey\)/);
    } finally {
      await bed.backend.setBastionForwarding({ securityGroup: 'bastion', enabled: false });
      await bed.backend.deleteBastionRule(scope, { securityGroup: 'bastion', ruleId });
    }
  });

  it('lets the host namespace reach an exposed root-namespace loopback port, and no other', async () => {
    const server: Server = createServer((_req, res) => res.end('engine-local-service'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const other: Server = createServer((_req, res) => res.end('not exposed'));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const otherPort = (other.address() as AddressInfo).port;
      await bed.backend.exposeLoopbackPorts([port]);
      const get = (p: number): Promise<{ stdout: string }> =>
        execFileAsync('ip', [
          ...bed.backend.sandboxCommandPrefix().slice(1),
          '/usr/bin/python3',
          '-c',
          `import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:${p}/', timeout=3).read().decode())`,
        ]);
      expect((await get(port)).stdout.trim()).toBe('engine-local-service');
      await expect(get(otherPort)).rejects.toThrow(/Connection refused/);
    } finally {
      server.close();
      other.close();
    }
  });

  it('deletes a VM: its namespace and processes are gone', async () => {
    const ns = bed.backend.vmNamespace(scope, 'broken')!;
    await bed.backend.deleteVm(scope, 'broken');
    const { stdout } = await execFileAsync('ip', ['netns', 'list']);
    expect(stdout).not.toContain(ns);
    expect((await bed.backend.describeVms(scope)).map((v) => v.name)).toEqual(['web1']);
  });

  it('starts empty after a crash: a restart on the same state dir removes the previous run', async () => {
    // A second instance on the same prefix and state dir stands for the engine after a crash.
    const restarted = new NetnsBackend({ stateDir: bed.stateDir, prefix: bed.prefix });
    await restarted.start();
    try {
      expect(await restarted.describeVms(scope)).toEqual([]);
      const { stdout } = await execFileAsync('ip', ['netns', 'list']);
      expect(stdout).not.toContain(`${bed.prefix}-vm`);
    } finally {
      await restarted.stop();
    }
  });
});
