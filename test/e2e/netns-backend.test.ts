import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BastionAccess, BastionSpec } from '../../local/cloud-backend.ts';
import { requirePrerequisites } from './helpers/prerequisites.ts';
import {
  cloudConfig,
  jumpArgs,
  keyFiles,
  knownHosts,
  LOGIN,
  leftovers,
  namespaceProcesses,
  processRunning,
  serverSpec,
  sshFromHost,
  sshOptions,
  startNetnsBed,
  subnet,
  waitForLogin,
  type KeyFiles,
  type NetnsBed,
} from './helpers/netnsBed.ts';

const execFileAsync = promisify(execFile);
/** A SYN the security group drops (not a slow handshake, which would say "during banner exchange"). */
const DROPPED = /port 22: Connection timed out/;
const runSuite = requirePrerequisites();

/**
 * The netns hypervisor driven as the OpenStack front drives it (startBastion, setBastionAccess,
 * startServer, deleteServer), checked from outside with the real OpenSSH client in the engine's
 * namespace: what admits a connection, who may log in, where a key may forward, which host
 * key answers, and that nothing outlives a server or the bed.
 */
describe.skipIf(!runSuite)('Class: NetnsHypervisor (real OpenSSH and nftables in network namespaces)', () => {
  let bed: NetnsBed;
  let dir: string;
  const project = `proj-${randomBytes(3).toString('hex')}`;
  const net1 = subnet('10.0.0.0/24');
  const net2 = subnet('10.1.0.0/24');
  let bastion: BastionSpec & { hostKey: string };
  let keyA: KeyFiles;
  let keyB: KeyFiles;
  let stranger: KeyFiles;
  let known: string;
  let egress: string;
  const vms: Record<string, { id: string; fixedIp: string; hostKey: string }> = {};

  const access = (rules: BastionAccess['ingress'], logins: BastionAccess['logins']): Promise<void> =>
    bed.hypervisor.setBastionAccess(bastion.id, { ingress: rules, logins });
  const sshRule = (): BastionAccess['ingress'][number] => ({ id: `sgr-${randomBytes(4).toString('hex')}`, protocol: 'tcp', portMin: 22, portMax: 22, remoteIpPrefix: `${egress}/32` });
  const loginsAB = (): BastionAccess['logins'] => [
    { item: 'ctd-access-depA', publicKey: keyA.publicKey, targets: [vms.a1!.fixedIp, vms.a2!.fixedIp, vms.broken!.fixedIp] },
    { item: 'ctd-access-depB', publicKey: keyB.publicKey, targets: [vms.b1!.fixedIp] },
  ];
  const sshBastion = (key: KeyFiles, kh = known): ReturnType<typeof sshFromHost> =>
    sshFromHost(bed, [...sshOptions(key, kh), `${LOGIN}@${bastion.address}`, 'echo on-bastion']);
  const sshVm = async (key: KeyFiles, vm: string, command: string, kh = known): ReturnType<typeof sshFromHost> =>
    sshFromHost(bed, [...(await jumpArgs(dir, key, kh, bastion.address)), `${LOGIN}@${vms[vm]!.fixedIp}`, command]);

  beforeAll(async () => {
    const started = await startNetnsBed();
    bed = started;
    dir = bed.stateDir;
    console.log(`netns bring-up: ${started.bringUpMs} ms (prefix ${bed.prefix})`);
    egress = await bed.hypervisor.egressAddress();
    [keyA, keyB, stranger] = await Promise.all([keyFiles(dir, 'depA'), keyFiles(dir, 'depB'), keyFiles(dir, 'stranger')]);

    const spec: BastionSpec = { id: randomUUID(), projectId: project, address: bed.hypervisor.layout.floatingRange.first, fixedIp: '192.168.254.2', user: LOGIN };
    const t0 = Date.now();
    const b = await bed.hypervisor.startBastion(spec, { restore: false });
    console.log(`bastion up: ${Date.now() - t0} ms`);
    expect(b.port).toBe(22);
    bastion = { ...spec, hostKey: b.hostKey };

    const t1 = Date.now();
    const specs = {
      a1: serverSpec(project, 'a1', net1, '10.0.0.5', cloudConfig(keyA.publicKey, { write_files: [{ path: '/srv/motd', content: 'hello from user data\n' }] })),
      a2: serverSpec(project, 'a2', net2, '10.1.0.5', cloudConfig(keyA.publicKey)),
      b1: serverSpec(project, 'b1', net1, '10.0.0.6', cloudConfig(keyB.publicKey)),
      broken: serverSpec(project, 'broken', net2, '10.1.0.9', cloudConfig(keyA.publicKey, { bootcmd: ['exit 3'] })),
    };
    await Promise.all(
      Object.entries(specs).map(async ([name, s]) => {
        const { hostKey } = await bed.hypervisor.startServer(s, { restore: false });
        vms[name] = { id: s.id, fixedIp: s.fixedIp, hostKey };
      }),
    );
    console.log(`four servers running: ${Date.now() - t1} ms`);
    known = await knownHosts(join(dir, 'known_hosts'), [bastion, ...Object.values(vms).map((v) => ({ address: v.fixedIp, hostKey: v.hostKey }))]);
  });

  afterAll(async () => {
    if (!bed) return;
    const t0 = Date.now();
    await bed.close();
    console.log(`netns teardown: ${Date.now() - t0} ms`);
    expect(await leftovers(bed.prefix, bed.stateDir)).toEqual([]);
  });

  it('starts the bastion closed: no rule, no connection', async () => {
    const r = await sshBastion(keyA);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(DROPPED);
  });

  it('admits the engine only while an ingress rule names its egress address', async () => {
    const other = { ...sshRule(), remoteIpPrefix: '10.99.0.0/16' };
    await access([other], loginsAB());
    expect((await sshBastion(keyA)).stderr).toMatch(DROPPED);

    const udp = { ...sshRule(), protocol: 'udp' };
    await access([other, udp], loginsAB());
    expect((await sshBastion(keyA)).stderr).toMatch(DROPPED);

    await access([other, sshRule()], loginsAB());
    const open = await sshBastion(keyA);
    expect(open.stderr).toBe('');
    expect(open.stdout).toBe('on-bastion\n');

    await access([other], loginsAB());
    expect((await sshBastion(keyA)).stderr).toMatch(DROPPED);
  });

  it('keeps a session the rule admitted when the rule is removed (a stateful group)', async () => {
    await access([sshRule()], loginsAB());
    const session = sshFromHost(bed, [...sshOptions(keyA, known), `${LOGIN}@${bastion.address}`, 'sleep 2; echo still-here']);
    await new Promise((r) => setTimeout(r, 1000));
    await access([], loginsAB());
    const r = await session;
    expect(r.stdout).toBe('still-here\n');
    expect((await sshBastion(keyA)).stderr).toMatch(DROPPED);
  });

  it('lets in only keys with a ctd-access item', async () => {
    await access([sshRule()], loginsAB());
    const r = await sshBastion(stranger);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied \(publickey\)/);
    expect((await sshBastion(keyB)).stdout).toBe('on-bastion\n');

    // The access item goes (bastion-close): the same key is refused at once.
    await access([sshRule()], loginsAB().filter((l) => l.item !== 'ctd-access-depB'));
    expect((await sshBastion(keyB)).stderr).toMatch(/Permission denied \(publickey\)/);
  });

  it('forwards a key only to the fixed IPs of its own deployment\'s servers (ssh -J)', async () => {
    await access([sshRule()], loginsAB());
    const a1 = await waitForLogin(() => sshVm(keyA, 'a1', 'hostname; cat /srv/motd'));
    expect(a1.stderr).toBe('');
    expect(a1.stdout).toBe('a1\nhello from user data\n');
    const a2 = await waitForLogin(() => sshVm(keyA, 'a2', 'hostname'));
    expect(a2.stdout).toBe('a2\n');

    // b1 is on a1's subnet, behind the same bastion, but not keyA's.
    const cross = await sshVm(keyA, 'b1', 'hostname');
    expect(cross.code).toBe(255);
    expect(cross.stderr).toMatch(/administratively prohibited/);
    const own = await waitForLogin(() => sshVm(keyB, 'b1', 'hostname'));
    expect(own.stdout).toBe('b1\n');

    // A login whose targets the front emptied may log in but forwards nowhere.
    await access([sshRule()], [{ item: 'ctd-access-depA', publicKey: keyA.publicKey, targets: [] }]);
    expect((await sshVm(keyA, 'a1', 'hostname')).stderr).toMatch(/administratively prohibited/);
  });

  it('runs a server whose bootcmd fails, without the deployment key (as cloud-init would)', async () => {
    await access([sshRule()], loginsAB());
    // Up to the forward everything is allowed; the VM's own sshd refuses the key it never installed.
    const r = await waitForLogin(() => sshVm(keyA, 'broken', 'true'), 3_000);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Permission denied \(publickey\)/);
  });

  it('answers with the host keys it reported: a pinned wrong key is refused', async () => {
    await access([sshRule()], loginsAB());
    const wrong = await knownHosts(join(dir, 'known_hosts_wrong'), [bastion, { address: vms.a1!.fixedIp, hostKey: vms.b1!.hostKey }]);
    const r = await sshVm(keyA, 'a1', 'true', wrong);
    expect(r.code).toBe(255);
    expect(r.stderr).toMatch(/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/);
    expect(vms.a1!.hostKey).toMatch(/^ssh-ed25519 AAAA\S+$/);
    expect(new Set([bastion.hostKey, ...Object.values(vms).map((v) => v.hostKey)]).size).toBe(5);
  });

  it('answers a second startServer of a running id as the first', async () => {
    const again = await bed.hypervisor.startServer(
      { id: vms.a1!.id, projectId: project, name: 'a1', fixedIp: vms.a1!.fixedIp, network: net1, userData: '' },
      { restore: false },
    );
    expect(again.hostKey).toBe(vms.a1!.hostKey);
  });

  it('refuses a subnet that overlaps a live one of the project, and lets another project reuse the CIDR', async () => {
    const overlapping = subnet('10.0.0.0/16');
    await expect(bed.hypervisor.startServer(serverSpec(project, 'clash', overlapping, '10.0.9.9', ''), { restore: false })).rejects.toThrow(
      /subnet \S+ \(10\.0\.0\.0\/16\) overlaps live subnet \S+ \(10\.0\.0\.0\/24\)/,
    );
    await expect(bed.hypervisor.startServer(serverSpec(project, 'nogw', subnet('10.7.0.0/24', null), '10.7.0.5', ''), { restore: false })).rejects.toThrow(
      /has no gateway_ip/,
    );

    const other = `proj-${randomBytes(3).toString('hex')}`;
    const same = serverSpec(other, 'twin', subnet('10.0.0.0/24'), '10.0.0.5', cloudConfig(keyA.publicKey));
    await bed.hypervisor.startServer(same, { restore: false });
    const ns = bed.hypervisor.serverNamespace(same.id)!;
    const { stdout } = await execFileAsync('ip', ['-n', ns, '-4', '-o', 'addr', 'show']);
    expect(stdout).toContain('10.0.0.5/24');
    await bed.hypervisor.deleteServer(same.id);
    expect(bed.hypervisor.projectNamespace(other)).toBeUndefined();
  });

  it('ends every process a session started on a server when the server is deleted', async () => {
    await access([sshRule()], loginsAB());
    const marker = `${1000 + Math.floor(Math.random() * 8000)}.${randomBytes(2).readUInt16BE()}`;
    const started = await sshVm(keyB, 'b1', `setsid nohup sleep ${marker} >/dev/null 2>&1 </dev/null & echo started`);
    expect(started.stdout).toBe('started\n');
    const ns = bed.hypervisor.serverNamespace(vms.b1!.id)!;
    expect((await namespaceProcesses(ns)).map((p) => p.cmd)).toContain(`sleep ${marker}`);
    expect(await processRunning(`sleep ${marker}`)).toHaveLength(1);

    await bed.hypervisor.deleteServer(vms.b1!.id);
    expect(await processRunning(`sleep ${marker}`)).toEqual([]);
    const { stdout } = await execFileAsync('ip', ['netns', 'list']);
    expect(stdout).not.toContain(`${ns} `);
    expect(stdout.split('\n').map((l) => l.split(' ')[0])).not.toContain(ns);
    // Deleting again is a no-op.
    await bed.hypervisor.deleteServer(vms.b1!.id);
  });

  it('lets the engine namespace reach an exposed root-namespace loopback port, and no other', async () => {
    const server: Server = createServer((_req, res) => res.end('engine-local-service'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const other: Server = createServer((_req, res) => res.end('not exposed'));
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const otherPort = (other.address() as AddressInfo).port;
      await bed.hypervisor.exposeLoopbackPorts([port]);
      const get = (p: number): Promise<{ stdout: string }> =>
        execFileAsync('ip', [
          ...bed.hypervisor.sandboxCommandPrefix().slice(1),
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

  it('brings bastion and servers back after a restart with the same host keys, user data not applied again', async () => {
    await bed.hypervisor.stop();
    expect(await leftovers(bed.prefix, bed.stateDir)).toEqual([]);
    await bed.hypervisor.start();

    const b = await bed.hypervisor.startBastion(bastion, { restore: true });
    expect(b.hostKey).toBe(bastion.hostKey);
    const a1 = await bed.hypervisor.startServer(
      { id: vms.a1!.id, projectId: project, name: 'a1', fixedIp: vms.a1!.fixedIp, network: net1, userData: cloudConfig(keyA.publicKey, { bootcmd: ['touch /root/bootcmd-ran'] }) },
      { restore: true },
    );
    expect(a1.hostKey).toBe(vms.a1!.hostKey);
    await access([sshRule()], [{ item: 'ctd-access-depA', publicKey: keyA.publicKey, targets: [vms.a1!.fixedIp] }]);
    // Same pinned keys; the key installed on first boot still there (its "disk"); /srv fresh (tmpfs);
    // no bootcmd run (it would have run before sshd started).
    const r = await waitForLogin(() => sshVm(keyA, 'a1', 'hostname; ls /srv; ls -A ~; id -u'));
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('a1\n.ssh\n0\n');
  });
});
