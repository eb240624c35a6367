import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSshKeyPair } from '../../core/crypto/deploymentKey.ts';
import { Ssh2Hypervisor } from '../../local/cloud/backends/ssh2/index.ts';
import { pickLoopbackBlock, type LoopbackBlock } from '../../local/cloud/loopbackBlock.ts';
import { startLocalCloud, type LocalCloud } from '../../local/cloud/server.ts';
import { exec, forward, hostKeyFromConsole, OsApi, sshLogin } from '../helpers/openstackApi.ts';

const deploymentKey = generateSshKeyPair('ctd-test-dep1');
const otherKey = generateSshKeyPair('ctd-test-other');
const keyLine = (k: { publicKey: string }) => k.publicKey.trim().split(' ').slice(0, 2).join(' ');

let stateDir: string;
let block: LoopbackBlock;
let cloud: LocalCloud;
let a: OsApi;
let b: OsApi;

async function startCloud(): Promise<void> {
  cloud = await startLocalCloud({
    stateDir,
    hypervisor: new Ssh2Hypervisor({ stateDir, listenCidr: block.listenCidr }),
    floatingCidr: block.floatingCidr,
    faultInjection: true,
  });
  a = await OsApi.connect(cloud.keystoneUrl, await cloud.mintToken('tenant-a'));
  b = await OsApi.connect(cloud.keystoneUrl, await cloud.mintToken('tenant-b'));
}

const userData = (keys: string[], runcmd: string[] = []) =>
  Buffer.from(`#cloud-config\nssh_authorized_keys:\n${keys.map((k) => `  - ${k}\n`).join('')}runcmd:\n${runcmd.map((c) => `  - ${JSON.stringify(c)}\n`).join('')}`).toString('base64');

/** The project's bastion as the driver finds it: the server, its floating IP, its ssh_port. */
async function bastionOf(api: OsApi) {
  const { servers } = await api.ok('compute', 'GET', '/servers/detail?name=^bastion$');
  const server = servers[0];
  const floating = Object.values(server.addresses as Record<string, { addr: string; 'OS-EXT-IPS:type': string }[]>)
    .flat()
    .find((a) => a['OS-EXT-IPS:type'] === 'floating')!.addr;
  const { security_groups } = await api.ok('network', 'GET', '/security-groups?name=bastion');
  return { server, address: floating, port: Number(server.metadata.ssh_port ?? 22), groupId: security_groups[0].id as string };
}

async function createVm(api: OsApi, name: string, networkId: string, data: string) {
  const { server } = await api.ok('compute', 'POST', '/servers', {
    server: { name, imageRef: '3d5f0f8e-5b0e-4b55-9a63-7c1e2d0a1201', flavorRef: '2', networks: [{ uuid: networkId }], user_data: data },
  });
  const settled = await api.settled(server.id);
  const fixedIp = Object.values(settled.addresses as Record<string, { addr: string }[]>).flat()[0]?.addr;
  return { id: server.id as string, status: settled.status as string, fixedIp: fixedIp as string, server: settled };
}

async function network(api: OsApi, name: string, cidr: string): Promise<string> {
  const { network: net } = await api.ok('network', 'POST', '/networks', { network: { name } });
  await api.ok('network', 'POST', '/subnets', { subnet: { name: `${name}-sub`, network_id: net.id, cidr, ip_version: 4 } });
  return net.id;
}

/** Whether a plain TCP connection gets as far as the SSH banner (a refused source is cut before it). */
function sshBanner(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(3000, () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('data', (d) => {
      socket.destroy();
      resolve(d.toString().startsWith('SSH-2.0'));
    });
    socket.once('error', () => resolve(false));
    socket.once('close', () => resolve(false));
  });
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'ctd-cloud-ssh2-'));
  block = await pickLoopbackBlock();
  await startCloud();
});

afterAll(async () => {
  await cloud?.close();
  await rm(stateDir, { recursive: true, force: true });
});

describe('Local cloud (OpenStack front, ssh2 hypervisor)', () => {
  let netA: string;
  let vm: { id: string; fixedIp: string; server: any };
  let vmOtherKey: { id: string; fixedIp: string };
  let ruleId: string;

  beforeAll(async () => {
    netA = await network(a, 'private', '10.0.0.0/24');
    vm = await createVm(a, 'web1', netA, userData([keyLine(deploymentKey)], ['echo applied > marker.txt']));
    vmOtherKey = await createVm(a, 'other', netA, userData([keyLine(otherKey)]));
  });

  it('validates a token with its project and a catalog pointing back at the cloud; refuses a bad one with WWW-Authenticate', async () => {
    expect(a.projectId).toBe('tenant-a');
    const res = await fetch(`${cloud.keystoneUrl}/auth/tokens`, { headers: { 'x-auth-token': 'nope', 'x-subject-token': 'nope' } });
    expect(res.status).toBe(401);
    expect(res.headers.get('www-authenticate')).toBe(`Keystone uri="${cloud.keystoneUrl}"`);
  });

  it('gives every project a bastion server with a floating IP of the engine block and its ssh_port', async () => {
    const bastion = await bastionOf(a);
    expect(bastion.server.status).toBe('ACTIVE');
    expect(bastion.address.startsWith(block.cidr.replace(/0\/24$/, ''))).toBe(true);
    expect(bastion.port).toBe(2222);
    expect(bastion.address).not.toBe((await bastionOf(b)).address);
  });

  it('allocates fixed IPs from the subnet and applies user data; the console shows the VM real host key', async () => {
    expect(vm.server.status).toBe('ACTIVE');
    expect(vm.fixedIp).toBe('10.0.0.2');
    expect(vmOtherKey.fixedIp).toBe('10.0.0.3');
    const { output } = await a.ok('compute', 'POST', `/servers/${vm.id}/action`, { 'os-getConsoleOutput': { length: -1 } });
    const consoleKey = hostKeyFromConsole(output);
    expect(consoleKey).toMatch(/^ssh-ed25519 /);
    // The real key, as presented in the SSH handshake (checked below through the bastion).
    (vm as { consoleKey?: string }).consoleKey = consoleKey;
  });

  it('admits a source only while an ingress rule allows it', async () => {
    const bastion = await bastionOf(a);
    expect(await sshBanner(bastion.address, bastion.port)).toBe(false);
    const { security_group_rule } = await a.ok('network', 'POST', '/security-group-rules', {
      security_group_rule: { security_group_id: bastion.groupId, direction: 'ingress', protocol: 'tcp', port_range_min: bastion.port, port_range_max: bastion.port, remote_ip_prefix: `${await cloud.egressAddress()}/32`, description: 'ctd:dep1:bastion' },
    });
    ruleId = security_group_rule.id;
    expect(await sshBanner(bastion.address, bastion.port)).toBe(true);
    const duplicate = await a.call('network', 'POST', '/security-group-rules', {
      security_group_rule: { security_group_id: bastion.groupId, direction: 'ingress', protocol: 'tcp', port_range_min: bastion.port, port_range_max: bastion.port, remote_ip_prefix: `${await cloud.egressAddress()}/32` },
    });
    expect(duplicate.status).toBe(409);
    expect(duplicate.body.NeutronError.type).toBe('SecurityGroupRuleExists');
    expect(duplicate.body.NeutronError.message).toBe(`Security group rule already exists. Rule id is ${ruleId}.`);
    // A rule for another port admits nothing on the SSH port.
    const other = await a.ok('network', 'POST', '/security-group-rules', {
      security_group_rule: { security_group_id: bastion.groupId, direction: 'ingress', protocol: 'tcp', port_range_min: 80, port_range_max: 80, remote_ip_prefix: '0.0.0.0/0' },
    });
    await a.ok('network', 'DELETE', `/security-group-rules/${ruleId}`);
    expect(await sshBanner(bastion.address, bastion.port)).toBe(false);
    await a.ok('network', 'DELETE', `/security-group-rules/${other.security_group_rule.id}`);
    const again = await a.ok('network', 'POST', '/security-group-rules', {
      security_group_rule: { security_group_id: bastion.groupId, direction: 'ingress', protocol: 'tcp', port_range_min: bastion.port, port_range_max: bastion.port, remote_ip_prefix: `${await cloud.egressAddress()}/32` },
    });
    ruleId = again.security_group_rule.id;
  });

  it('accepts a key only while a ctd-access item holds it, and forwards it only to port 22 of VMs whose user data lists it', async () => {
    const bastion = await bastionOf(a);
    const login = () => sshLogin({ host: bastion.address, port: bastion.port, username: 'ctd', privateKey: deploymentKey.privateKey });
    await expect(login()).rejects.toThrow(/authentication/i);

    await a.ok('compute', 'PUT', `/servers/${bastion.server.id}/metadata/ctd-access-dep1`, { meta: { 'ctd-access-dep1': deploymentKey.publicKey.trim() } });
    const session = await login();
    try {
      const { output } = await a.ok('compute', 'POST', `/servers/${bastion.server.id}/action`, { 'os-getConsoleOutput': { length: -1 } });
      expect(session.hostKey).toBe(hostKeyFromConsole(output));

      const channel = await forward(session.client, vm.fixedIp, 22);
      const inner = await sshLogin({ sock: channel, username: 'ctd', privateKey: deploymentKey.privateKey });
      expect(inner.hostKey).toBe((vm as { consoleKey?: string }).consoleKey);
      expect((await exec(inner.client, 'cat marker.txt')).trim()).toBe('applied');
      inner.client.end();

      await expect(forward(session.client, vm.fixedIp, 2222)).rejects.toThrow(/Channel open failure/);
      await expect(forward(session.client, vmOtherKey.fixedIp, 22)).rejects.toThrow(/Channel open failure/);
    } finally {
      session.client.end();
    }

    await a.ok('compute', 'DELETE', `/servers/${bastion.server.id}/metadata/ctd-access-dep1`);
    await expect(login()).rejects.toThrow(/authentication/i);
  });

  it('keeps tenants apart: no sight of another project, and no way through its bastion', async () => {
    expect((await b.call('compute', 'GET', `/servers/${vm.id}`)).status).toBe(404);
    const { servers } = await b.ok('compute', 'GET', '/servers/detail');
    expect(servers.map((s: { name: string }) => s.name)).toEqual(['bastion']);
    const { networks } = await b.ok('network', 'GET', '/networks');
    expect(networks.map((n: { name: string }) => n.name).sort()).toEqual(['bastion-net', 'public']);
    expect((await b.call('network', 'DELETE', `/security-group-rules/${ruleId}`)).status).toBe(404);

    // Tenant B opens its own bastion to tenant A's key: it still cannot reach A's VM.
    const bastionB = await bastionOf(b);
    await b.ok('network', 'POST', '/security-group-rules', {
      security_group_rule: { security_group_id: bastionB.groupId, direction: 'ingress', protocol: 'tcp', port_range_min: bastionB.port, port_range_max: bastionB.port, remote_ip_prefix: '127.0.0.0/8' },
    });
    await b.ok('compute', 'PUT', `/servers/${bastionB.server.id}/metadata/ctd-access-x`, { meta: { 'ctd-access-x': deploymentKey.publicKey.trim() } });
    const session = await sshLogin({ host: bastionB.address, port: bastionB.port, username: 'ctd', privateKey: deploymentKey.privateKey });
    try {
      await expect(forward(session.client, vm.fixedIp, 22)).rejects.toThrow(/Channel open failure/);
    } finally {
      session.client.end();
    }
  });

  it('reports a server that fails to boot as ERROR with its fault', async () => {
    const res = await fetch(`${cloud.url}/_admin/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ kind: 'server-boot', namePattern: '^broken$', message: 'No valid host was found.' }),
    });
    expect(res.status).toBe(204);
    const broken = await createVm(a, 'broken', netA, '');
    expect(broken.status).toBe('ERROR');
    expect(broken.server.fault.message).toBe('No valid host was found.');
  });

  it('answers an injected OTC-style HTML 502', async () => {
    await fetch(`${cloud.url}/_admin/faults`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ method: 'GET', pathPattern: '^/network/v2\\.0/ports$', status: 502, times: 1, message: 'The backend server is unreachable', html: true }),
    });
    const first = await a.call('network', 'GET', '/ports');
    expect(first.status).toBe(502);
    expect(String(first.body)).toContain('<h1>The backend server is unreachable</h1>');
    expect((await a.call('network', 'GET', '/ports')).status).toBe(200);
  });

  it('comes back after a restart with the same servers, addresses and host keys', async () => {
    const before = (await a.ok('compute', 'POST', `/servers/${vm.id}/action`, { 'os-getConsoleOutput': { length: -1 } })).output;
    await cloud.close();
    await startCloud();
    const server = await a.settled(vm.id);
    expect(server.status).toBe('ACTIVE');
    const after = (await a.ok('compute', 'POST', `/servers/${vm.id}/action`, { 'os-getConsoleOutput': { length: -1 } })).output;
    expect(hostKeyFromConsole(after)).toBe(hostKeyFromConsole(before));
    const bastion = await bastionOf(a);
    expect(await sshBanner(bastion.address, bastion.port)).toBe(true);
  });

  it('deletes a server and frees its fixed IP and listener', async () => {
    await a.ok('compute', 'DELETE', `/servers/${vmOtherKey.id}`);
    expect((await a.call('compute', 'GET', `/servers/${vmOtherKey.id}`)).status).toBe(404);
    const { ports } = await a.ok('network', 'GET', `/ports?device_id=${vmOtherKey.id}`);
    expect(ports).toEqual([]);
  });
});
