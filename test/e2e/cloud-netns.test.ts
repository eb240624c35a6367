import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NetnsHypervisor } from '../../local/cloud/backends/netns/index.ts';
import { startLocalCloud, type LocalCloud } from '../../local/cloud/server.ts';
import { hostKeyFromConsole, OsApi } from '../helpers/openstackApi.ts';
import { requirePrerequisites } from './helpers/prerequisites.ts';
import { jumpArgs, keyFiles, knownHosts, leftovers, LOGIN, sshFromHost, sshOptions, type KeyFiles, type NetnsBed } from './helpers/netnsBed.ts';

const execFileAsync = promisify(execFile);
const runSuite = requirePrerequisites();
const DROPPED = /port 22: Connection timed out/;

/**
 * The local cloud's OpenStack front over the netns hypervisor, driven through the OpenStack APIs
 * (as the driver and the `openstack` CLI do) and checked with the real OpenSSH client from the
 * engine's namespace: the console's host keys are the ones sshd presents, a Neutron rule opens
 * the bastion, a `ctd-access-*` item lets a key in and forward to its own VMs only.
 */
describe.skipIf(!runSuite)('Local cloud (OpenStack front, netns hypervisor)', () => {
  const prefix = `ctd${randomBytes(2).toString('hex')}`;
  let stateDir: string;
  let cloud: LocalCloud;
  let bed: NetnsBed;
  let a: OsApi;
  let b: OsApi;
  let key: KeyFiles;
  let otherKey: KeyFiles;
  let netA: string;
  const vms: Record<string, { id: string; fixedIp: string }> = {};

  async function startCloud(): Promise<void> {
    const hypervisor = new NetnsHypervisor({ stateDir, prefix });
    cloud = await startLocalCloud({ stateDir, hypervisor, floatingCidr: hypervisor.layout.floatingRange.cidr, faultInjection: true });
    bed = { hypervisor, prefix, stateDir, close: () => cloud.close() };
    a = await OsApi.connect(cloud.keystoneUrl, await cloud.mintToken('tenant-a'));
    b = await OsApi.connect(cloud.keystoneUrl, await cloud.mintToken('tenant-b'));
  }

  const userData = (keys: string[], extra = ''): string =>
    Buffer.from(`#cloud-config\nssh_authorized_keys:\n${keys.map((k) => `  - ${k}\n`).join('')}${extra}`).toString('base64');

  async function bastionOf(api: OsApi): Promise<{ server: any; address: string; port: number; groupId: string }> {
    const { servers } = await api.ok('compute', 'GET', '/servers/detail?name=^bastion$');
    const server = servers[0];
    const floating = Object.values(server.addresses as Record<string, { addr: string; 'OS-EXT-IPS:type': string }[]>)
      .flat()
      .find((x) => x['OS-EXT-IPS:type'] === 'floating')!.addr;
    const { security_groups } = await api.ok('network', 'GET', '/security-groups?name=bastion');
    return { server, address: floating, port: Number(server.metadata.ssh_port ?? 22), groupId: security_groups[0].id as string };
  }

  async function network(api: OsApi, name: string, cidr: string): Promise<string> {
    const { network: net } = await api.ok('network', 'POST', '/networks', { network: { name } });
    await api.ok('network', 'POST', '/subnets', { subnet: { name: `${name}-sub`, network_id: net.id, cidr, ip_version: 4 } });
    return net.id;
  }

  async function createVm(api: OsApi, name: string, networkId: string, data: string): Promise<{ id: string; fixedIp: string; server: any }> {
    const { server } = await api.ok('compute', 'POST', '/servers', {
      server: { name, imageRef: '3d5f0f8e-5b0e-4b55-9a63-7c1e2d0a1201', flavorRef: '2', networks: [{ uuid: networkId }], user_data: data },
    });
    const settled = await api.settled(server.id, 30_000);
    const fixedIp = Object.values(settled.addresses as Record<string, { addr: string }[]>).flat()[0]?.addr as string;
    return { id: server.id as string, fixedIp, server: settled };
  }

  const consoleKey = async (api: OsApi, serverId: string): Promise<string> =>
    hostKeyFromConsole((await api.ok('compute', 'POST', `/servers/${serverId}/action`, { 'os-getConsoleOutput': { length: -1 } })).output)!;

  /** known_hosts built only from what the cloud publishes: the console's host keys. */
  async function knownFromConsole(api: OsApi, bastion: { address: string; server: { id: string } }): Promise<string> {
    const hosts = [{ address: bastion.address, hostKey: await consoleKey(api, bastion.server.id) }];
    for (const vm of Object.values(vms)) hosts.push({ address: vm.fixedIp, hostKey: await consoleKey(api, vm.id) });
    return knownHosts(join(stateDir, `known_hosts_${randomBytes(2).toString('hex')}`), hosts);
  }

  const ruleFor = (groupId: string, cidr: string, port = 22): unknown => ({
    security_group_rule: { security_group_id: groupId, direction: 'ingress', protocol: 'tcp', port_range_min: port, port_range_max: port, remote_ip_prefix: cidr, description: 'ctd:dep1:bastion' },
  });

  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'ctd-cloud-netns-'));
    await startCloud();
    [key, otherKey] = await Promise.all([keyFiles(stateDir, 'dep1'), keyFiles(stateDir, 'other')]);
    netA = await network(a, 'private', '10.0.0.0/24');
    const web1 = await createVm(a, 'web1', netA, userData([key.publicKey], "runcmd:\n  - echo applied > /root/marker.txt\n"));
    const other = await createVm(a, 'other', netA, userData([otherKey.publicKey]));
    expect([web1.server.status, other.server.status]).toEqual(['ACTIVE', 'ACTIVE']);
    vms.web1 = web1;
    vms.other = other;
  });

  afterAll(async () => {
    await cloud?.close();
    if (stateDir) {
      expect(await leftovers(prefix, stateDir)).toEqual([]);
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('gives each project a bastion at a floating IP of the hypervisor range, on port 22', async () => {
    const [ba, bb] = [await bastionOf(a), await bastionOf(b)];
    expect(ba.server.status).toBe('ACTIVE');
    expect(ba.port).toBe(22);
    expect(ba.address.startsWith(bed.hypervisor.layout.floatingRange.cidr.replace(/0\/24$/, ''))).toBe(true);
    expect(bb.address).not.toBe(ba.address);
    expect(vms.web1!.fixedIp).toMatch(/^10\.0\.0\.\d+$/);
    expect(await cloud.egressAddress()).toBe(bed.hypervisor.layout.egressAddress);
  });

  it('opens the bastion for exactly the life of a Neutron rule naming the egress address', async () => {
    const bastion = await bastionOf(a);
    const known = await knownFromConsole(a, bastion);
    const probe = (): ReturnType<typeof sshFromHost> => sshFromHost(bed, [...sshOptions(key, known), `${LOGIN}@${bastion.address}`, 'true']);
    expect((await probe()).stderr).toMatch(DROPPED);
    const other = await a.ok('network', 'POST', '/security-group-rules', ruleFor(bastion.groupId, '0.0.0.0/0', 80));
    expect((await probe()).stderr).toMatch(DROPPED);
    const rule = await a.ok('network', 'POST', '/security-group-rules', ruleFor(bastion.groupId, `${await cloud.egressAddress()}/32`));
    // Reaches sshd, whose answer (no access item yet) is OpenSSH's own.
    expect((await probe()).stderr).toMatch(/Permission denied \(publickey\)/);
    await a.ok('network', 'DELETE', `/security-group-rules/${rule.security_group_rule.id}`);
    expect((await probe()).stderr).toMatch(DROPPED);
    await a.ok('network', 'DELETE', `/security-group-rules/${other.security_group_rule.id}`);
  });

  it('lets a key in through its ctd-access item and forwards it only to VMs whose user data lists it; host keys are the console\'s', async () => {
    const bastion = await bastionOf(a);
    await a.ok('network', 'POST', '/security-group-rules', ruleFor(bastion.groupId, `${await cloud.egressAddress()}/32`));
    const known = await knownFromConsole(a, bastion);
    const toVm = async (k: KeyFiles, vm: string, cmd: string): ReturnType<typeof sshFromHost> =>
      sshFromHost(bed, [...(await jumpArgs(stateDir, k, known, bastion.address)), `${LOGIN}@${vms[vm]!.fixedIp}`, cmd]);

    expect((await toVm(key, 'web1', 'true')).stderr).toMatch(/Permission denied \(publickey\)/);
    await a.ok('compute', 'PUT', `/servers/${bastion.server.id}/metadata/ctd-access-dep1`, { meta: { 'ctd-access-dep1': key.publicKey } });

    let r = await toVm(key, 'web1', 'hostname; cat /root/marker.txt');
    for (let i = 0; i < 50 && r.stdout !== 'web1\napplied\n'; i++) r = await toVm(key, 'web1', 'hostname; cat /root/marker.txt');
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('web1\napplied\n');

    const cross = await toVm(key, 'other', 'true');
    expect(cross.code).toBe(255);
    expect(cross.stderr).toMatch(/administratively prohibited/);
    // The other VM's key has no access item: not even the bastion lets it in.
    expect((await toVm(otherKey, 'other', 'true')).stderr).toMatch(/Permission denied \(publickey\)/);

    // Tenant B's bastion, opened to the same key, forwards nowhere into tenant A.
    const bastionB = await bastionOf(b);
    await b.ok('network', 'POST', '/security-group-rules', ruleFor(bastionB.groupId, `${await cloud.egressAddress()}/32`));
    await b.ok('compute', 'PUT', `/servers/${bastionB.server.id}/metadata/ctd-access-x`, { meta: { 'ctd-access-x': key.publicKey } });
    const knownB = await knownHosts(join(stateDir, 'known_hosts_b'), [
      { address: bastionB.address, hostKey: await consoleKey(b, bastionB.server.id) },
      { address: vms.web1!.fixedIp, hostKey: await consoleKey(a, vms.web1!.id) },
    ]);
    const viaB = await sshFromHost(bed, [...(await jumpArgs(stateDir, key, knownB, bastionB.address)), `${LOGIN}@${vms.web1!.fixedIp}`, 'true']);
    expect(viaB.stderr).toMatch(/administratively prohibited/);

    await a.ok('compute', 'DELETE', `/servers/${bastion.server.id}/metadata/ctd-access-dep1`);
    expect((await toVm(key, 'web1', 'true')).stderr).toMatch(/Permission denied \(publickey\)/);
  });

  it('reports a server on an overlapping subnet of the project as ERROR, naming both subnets', async () => {
    const wide = await network(a, 'wide', '10.0.0.0/16');
    const clash = await createVm(a, 'clash', wide, userData([key.publicKey]));
    expect(clash.server.status).toBe('ERROR');
    expect(clash.server.fault.message).toMatch(/\(10\.0\.0\.0\/16\) overlaps live subnet \S+ \(10\.0\.0\.0\/24\)/);
    await a.ok('compute', 'DELETE', `/servers/${clash.id}`);
  });

  it('comes back after a restart with the same host keys, and deletes a server with every process', async () => {
    const before = await consoleKey(a, vms.web1!.id);
    await cloud.close();
    expect(await leftovers(prefix, stateDir)).toEqual([]);
    await startCloud();
    expect((await a.settled(vms.web1!.id, 30_000)).status).toBe('ACTIVE');
    expect(await consoleKey(a, vms.web1!.id)).toBe(before);

    const bastion = await bastionOf(a);
    await a.ok('compute', 'PUT', `/servers/${bastion.server.id}/metadata/ctd-access-dep1`, { meta: { 'ctd-access-dep1': key.publicKey } });
    const known = await knownFromConsole(a, bastion);
    const args = [...(await jumpArgs(stateDir, key, known, bastion.address)), `${LOGIN}@${vms.web1!.fixedIp}`, 'setsid nohup sleep 4321.5 >/dev/null 2>&1 </dev/null & hostname'];
    let r = await sshFromHost(bed, args);
    for (let i = 0; i < 50 && r.code !== 0; i++) r = await sshFromHost(bed, args);
    expect(r.stdout).toBe('web1\n');
    const ns = bed.hypervisor.serverNamespace(vms.web1!.id)!;
    const pids = async (): Promise<string> => (await execFileAsync('ip', ['netns', 'pids', ns]).catch(() => ({ stdout: '' }))).stdout;
    expect((await pids()).trim()).not.toBe('');

    await a.ok('compute', 'DELETE', `/servers/${vms.web1!.id}`);
    for (let i = 0; i < 100 && bed.hypervisor.serverNamespace(vms.web1!.id); i++) await new Promise((res) => setTimeout(res, 50));
    const { stdout } = await execFileAsync('ip', ['netns', 'list']);
    expect(stdout.split('\n').map((l) => l.split(' ')[0])).not.toContain(ns);
    const { stdout: ps } = await execFileAsync('ps', ['-eo', 'args']);
    expect(ps).not.toContain('sleep 4321.5');
  });
});
