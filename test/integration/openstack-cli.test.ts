import { execFile } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSshKeyPair } from '../../core/crypto/deploymentKey.ts';
import { Ssh2Hypervisor } from '../../local/cloud/backends/ssh2/index.ts';
import { pickLoopbackBlock } from '../../local/cloud/loopbackBlock.ts';
import { startLocalCloud, type LocalCloud } from '../../local/cloud/server.ts';
import { exec, forward, hostKeyFromConsole, OsApi, sshLogin } from '../helpers/openstackApi.ts';

const execFileAsync = promisify(execFile);
const OPENSTACK = '/usr/bin/openstack';
const PYTHON = '/usr/bin/python3';

/** Debian's python3-openstackclient must be there; under CI its absence fails the suite instead of skipping it. */
function cliAvailable(): boolean {
  try {
    accessSync(OPENSTACK, constants.R_OK);
    accessSync(PYTHON, constants.X_OK);
    return true;
  } catch {
    const why = `the openstack CLI test needs ${OPENSTACK} (apt-get install -y --no-install-recommends python3-openstackclient)`;
    if (process.env.CI) throw new Error(`CI is set and ${why}`);
    console.warn(`[skipped] ${why}`);
    return false;
  }
}

describe.skipIf(!cliAvailable())("Debian's openstack CLI against the local cloud", () => {
  let stateDir: string;
  let home: string;
  let cloud: LocalCloud;
  let env: Record<string, string>;
  const key = generateSshKeyPair('ctd-cli-test');

  /**
   * Runs CLI commands in one `openstack` process (its interactive mode reads them from stdin):
   * a call costs 3–7 s of Python start-up and discovery, so the test batches. Runs with
   * /usr/bin/python3 (TESTBED: the PATH python3 may be another one) and only the openrc in its
   * environment. Returns the JSON documents printed (`-f json` commands, in order) and stderr,
   * where the CLI reports a failed command before going on with the next.
   */
  async function batch(...commands: string[][]): Promise<{ docs: any[]; stderr: string }> {
    const quote = (arg: string) => (/^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'"'"'`)}'`);
    const child = execFileAsync(PYTHON, [OPENSTACK], { env, timeout: 150_000, maxBuffer: 16 * 1024 * 1024 });
    child.child.stdin!.end(commands.map((c) => c.map(quote).join(' ')).join('\n') + '\n');
    const { stdout, stderr } = await child;
    const docs: any[] = [];
    let chunk = '';
    for (const line of stdout.split('\n')) {
      chunk += `${line}\n`;
      if (/^(\}|\]|\[\]|\{\})$/.test(line)) {
        docs.push(JSON.parse(chunk));
        chunk = '';
      }
    }
    return { docs, stderr };
  }

  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'ctd-os-cli-'));
    home = await mkdtemp(join(tmpdir(), 'ctd-os-cli-home-'));
    const block = await pickLoopbackBlock();
    cloud = await startLocalCloud({ stateDir, hypervisor: new Ssh2Hypervisor({ stateDir, listenCidr: block.listenCidr }), floatingCidr: block.floatingCidr });
    env = { PATH: '/usr/bin:/bin', HOME: home, LANG: 'C.UTF-8', ...(await cloud.openrc('cli-tenant')) };
  });

  afterAll(async () => {
    await cloud?.close();
    await rm(stateDir, { recursive: true, force: true });
    await rm(home, { recursive: true, force: true });
  });

  it('issues a token; creates and lists a network, subnet and router with a gateway on public; deletes them', async () => {
    const created = await batch(
      ['token', 'issue', '-f', 'json'],
      ['network', 'create', 'cli-net', '-f', 'json'],
      ['subnet', 'create', '--network', 'cli-net', '--subnet-range', '10.5.0.0/24', 'cli-sub', '-f', 'json'],
      ['router', 'create', '--external-gateway', 'public', 'cli-router', '-f', 'json'],
      ['router', 'add', 'subnet', 'cli-router', 'cli-sub'],
      ['network', 'list', '-f', 'json'],
      ['subnet', 'list', '-f', 'json'],
      ['router', 'list', '-f', 'json'],
      ['router', 'show', 'cli-router', '-f', 'json'],
    );
    expect(created.stderr).toBe('');
    const [token, network, subnet, router, networks, subnets, routers, shown] = created.docs;
    expect(token.project_id).toBe('cli-tenant');
    expect(token.id).toMatch(/^gAAAA/);
    expect(subnet.cidr).toBe('10.5.0.0/24');
    const publicId = networks.find((n: { Name: string }) => n.Name === 'public').ID;
    expect(networks.map((n: { Name: string }) => n.Name)).toContain('cli-net');
    expect(subnets.find((s: { Name: string }) => s.Name === 'cli-sub').Network).toBe(network.id);
    expect(routers.map((r: { ID: string }) => r.ID)).toContain(router.id);
    expect(JSON.stringify(shown.external_gateway_info)).toContain(publicId);
    expect(JSON.stringify(shown.interfaces_info)).toContain('10.5.0.1');

    const deleted = await batch(
      ['router', 'delete', 'cli-router'],
      ['router', 'remove', 'subnet', 'cli-router', 'cli-sub'],
      ['router', 'delete', 'cli-router'],
      ['subnet', 'delete', 'cli-sub'],
      ['network', 'delete', 'cli-net'],
      ['network', 'list', '-f', 'json'],
      ['router', 'list', '-f', 'json'],
    );
    // Only the first delete fails: the router still had its interface then.
    expect(deleted.stderr).toMatch(/still has ports/);
    expect(deleted.stderr.match(/Failed to delete/g)).toHaveLength(1);
    expect(deleted.docs[0].map((n: { Name: string }) => n.Name).sort()).toEqual(['bastion-net', 'public']);
    expect(deleted.docs[1]).toEqual([]);
  }, 150_000);

  it('creates a security group rule, refuses the duplicate with 409 naming it, deletes it', async () => {
    const rule = ['security', 'group', 'rule', 'create', '--ingress', '--protocol', 'tcp', '--dst-port', '2222', '--remote-ip', '127.0.0.1/32', 'bastion'];
    const created = await batch([...rule, '-f', 'json'], [...rule, '-f', 'json']);
    const [first] = created.docs;
    expect(created.docs).toHaveLength(1);
    expect(created.stderr).toContain(`ConflictException: 409, Security group rule already exists. Rule id is ${first.id}.`);
    const deleted = await batch(['security', 'group', 'rule', 'delete', first.id], ['security', 'group', 'rule', 'list', 'bastion', '-f', 'json']);
    expect(deleted.stderr).toBe('');
    expect(deleted.docs[0].map((r: { ID: string }) => r.ID)).not.toContain(first.id);
  }, 120_000);

  it('creates a server with user data and waits for it, lists, shows, gives it a floating IP, deletes it', async () => {
    const userData = join(home, 'user-data.yaml');
    await writeFile(userData, `#cloud-config\nssh_authorized_keys:\n  - ${key.publicKey.trim()}\nruncmd:\n  - echo from-user-data > marker.txt\n`);
    const created = await batch(
      ['network', 'create', 'vm-net', '-f', 'json'],
      ['subnet', 'create', '--network', 'vm-net', '--subnet-range', '10.6.0.0/24', 'vm-sub', '-f', 'json'],
      ['server', 'create', '--image', 'debian-12', '--flavor', 'm1.small', '--network', 'vm-net', '--user-data', userData, '--wait', 'cli-vm', '-f', 'json'],
      ['server', 'list', '-f', 'json'],
      ['server', 'show', 'cli-vm', '-f', 'json'],
      ['server', 'show', 'bastion', '-f', 'json'],
      ['floating', 'ip', 'create', 'public', '-f', 'json'],
    );
    expect(created.stderr).toBe('');
    const [, , server, list, shown, bastion, fip] = created.docs;
    expect(server.status).toBe('ACTIVE');
    expect(list.map((s: { Name: string; Status: string }) => `${s.Name}:${s.Status}`).sort()).toEqual(['bastion:ACTIVE', 'cli-vm:ACTIVE']);
    expect(JSON.stringify(shown.addresses)).toContain('10.6.0.2');
    expect(shown.flavor).toContain('m1.small');
    expect(fip.floating_ip_address).toMatch(/^127\./);

    // The user data really ran: log in through the bastion, opened over the API as the driver does.
    const api = await OsApi.connect(cloud.keystoneUrl, await cloud.mintToken('cli-tenant'));
    const port = Number(bastion.properties.ssh_port);
    await api.ok('compute', 'PUT', `/servers/${bastion.id}/metadata/ctd-access-cli`, { meta: { 'ctd-access-cli': key.publicKey.trim() } });
    const { security_groups } = await api.ok('network', 'GET', '/security-groups?name=bastion');
    await api.ok('network', 'POST', '/security-group-rules', {
      security_group_rule: { security_group_id: security_groups[0].id, direction: 'ingress', protocol: 'tcp', port_range_min: port, port_range_max: port, remote_ip_prefix: `${await cloud.egressAddress()}/32` },
    });
    const bastionAddress = JSON.stringify(bastion.addresses).match(/127\.\d+\.\d+\.\d+/)![0];
    const session = await sshLogin({ host: bastionAddress, port, username: 'ctd', privateKey: key.privateKey });
    try {
      const vm = await sshLogin({ sock: await forward(session.client, '10.6.0.2', 22), username: 'ctd', privateKey: key.privateKey });
      expect((await exec(vm.client, 'cat marker.txt')).trim()).toBe('from-user-data');
      const { output } = await api.ok('compute', 'POST', `/servers/${shown.id}/action`, { 'os-getConsoleOutput': { length: -1 } });
      expect(hostKeyFromConsole(output)).toBe(vm.hostKey);
      vm.client.end();
    } finally {
      session.client.end();
    }

    const deleted = await batch(
      ['floating', 'ip', 'delete', fip.floating_ip_address],
      ['server', 'delete', '--wait', 'cli-vm'],
      ['server', 'list', '-f', 'json'],
      ['floating', 'ip', 'list', '-f', 'json'],
    );
    expect(deleted.stderr).toBe('');
    expect(deleted.docs[0].map((s: { Name: string }) => s.Name)).toEqual(['bastion']);
    expect(deleted.docs[1].map((f: { 'Floating IP Address': string }) => f['Floating IP Address'])).not.toContain(fip.floating_ip_address);
  }, 180_000);
});
