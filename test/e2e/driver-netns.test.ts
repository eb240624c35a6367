import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpenStackDriver } from '../../adapters/openstack/index.ts';
import { readBundle } from '../../cli/bundle.ts';
import { renderUserData } from '../../core/cloudInit.ts';
import { DeploymentSchema, type DeploymentSpec } from '../../core/deployment/schema.ts';
import type { CloudContext, CloudDriver, CloudResourceRef } from '../../core/ports.ts';
import { NetnsHypervisor } from '../../local/cloud/backends/netns/index.ts';
import { startLocalCloud, type LocalCloud } from '../../local/cloud/server.ts';
import { bastionRuleIds } from './helpers/engineNetns.ts';
import { jumpArgs, keyFiles, knownHosts, leftovers, sshFromHost, sshOptions, type KeyFiles, type NetnsBed } from './helpers/netnsBed.ts';
import { requirePrerequisites } from './helpers/prerequisites.ts';

const execFileAsync = promisify(execFile);
const runSuite = requirePrerequisites();
const EXAMPLE = join(import.meta.dirname, '../../examples/hello-world/deployment.yaml');
const DROPPED = /port 22: Connection timed out/;

/**
 * The production `openstack` driver against the local cloud on the netns hypervisor, on the
 * hello-world example's topology, as provision → bastion-open → bastion-close → deprovision
 * would call it; in between the real OpenSSH client jumps to each VM with the deployment key,
 * pinning the host keys the driver read from the consoles.
 */
describe.skipIf(!runSuite)('OpenStack driver on the netns hypervisor (hello-world topology)', () => {
  const prefix = `ctd${randomBytes(2).toString('hex')}`;
  const deploymentId = `dep-${randomBytes(3).toString('hex')}`;
  let stateDir: string;
  let cloud: LocalCloud;
  let hv: NetnsHypervisor;
  let bed: NetnsBed;
  let driver: CloudDriver;
  let spec: DeploymentSpec;
  let key: KeyFiles;
  let projectId: string;
  const records: CloudResourceRef[] = [];
  let ctx: CloudContext;

  beforeAll(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'ctd-driver-netns-'));
    hv = new NetnsHypervisor({ stateDir, prefix });
    cloud = await startLocalCloud({ stateDir, hypervisor: hv, floatingCidr: hv.layout.floatingRange.cidr });
    bed = { hypervisor: hv, prefix, stateDir, close: () => cloud.close() };
    const token = await cloud.mintToken('tenant-driver');
    driver = new OpenStackDriver({ keystoneUrl: cloud.keystoneUrl, egressCidrs: [await cloud.egressAddress()], pollIntervalMs: 100 });
    projectId = (await driver.identify(token))!.tenantId;
    spec = DeploymentSchema.parse(await readBundle(EXAMPLE));
    key = await keyFiles(stateDir, deploymentId);
    ctx = {
      token,
      deploymentId,
      record: async (ref) => void records.push(ref),
      forget: async (ref) => {
        const i = records.findIndex((r) => r.kind === ref.kind && r.id === ref.id);
        if (i >= 0) records.splice(i, 1);
      },
    };
  });

  afterAll(async () => {
    await cloud?.close();
    if (stateDir) {
      expect(await leftovers(prefix, stateDir)).toEqual([]);
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('provisions, opens the bastion, reaches every VM with OpenSSH, closes and deprovisions without a trace', async () => {
    const t0 = Date.now();
    for (const [index, network] of spec.networks.entries()) await driver.ensureNetwork(ctx, { network, index });
    for (const group of spec.securityGroups) await driver.ensureSecurityGroup(ctx, group);
    await Promise.all(spec.vms.map((vm) => driver.ensureVm(ctx, { vm, userData: renderUserData(vm, key.publicKey) })));
    console.log(`provision (1 network, 1 group, ${spec.vms.length} VMs): ${Date.now() - t0} ms`);

    const bastion = await driver.describeBastion(ctx, spec.bastion);
    const cidrs = await driver.egressCidrs(ctx);
    for (const cidr of cidrs) await driver.openBastionRule(ctx, { securityGroup: spec.bastion.securityGroup, cidr, port: bastion.port });
    await driver.grantBastionAccess(ctx, { server: spec.bastion.server, publicKey: key.publicKey });
    expect(await bastionRuleIds(hv, projectId)).toHaveLength(cidrs.length);

    const vms = await driver.describeVms(ctx);
    expect(vms.map((v) => v.name).sort()).toEqual(spec.vms.map((v) => v.name).sort());
    const known = await knownHosts(join(stateDir, 'known_hosts'), [
      { address: bastion.address, hostKey: bastion.hostKey! },
      ...vms.map((v) => ({ address: v.address, hostKey: v.hostKey! })),
    ]);
    for (const vm of vms) {
      const args = [...(await jumpArgs(stateDir, key, known, bastion.address, spec.bastion.user)), `${spec.bastion.user}@${vm.address}`, 'hostname'];
      let r = await sshFromHost(bed, args);
      for (let i = 0; i < 50 && r.code !== 0; i++) r = await sshFromHost(bed, args);
      expect(r.stderr).toBe('');
      // cloud-init's hostname (the topology's name), not the marked Nova name.
      expect(r.stdout).toBe(`${vm.name}\n`);
    }

    const ruleRefs = records.filter((r) => r.kind.includes('rule'));
    const { deleted } = await driver.closeBastionRules(ctx, { securityGroup: spec.bastion.securityGroup, recorded: ruleRefs });
    expect(deleted).toHaveLength(cidrs.length);
    await driver.revokeBastionAccess(ctx, { server: spec.bastion.server });
    expect(await bastionRuleIds(hv, projectId)).toEqual([]);
    const closed = await sshFromHost(bed, [...sshOptions(key, known), `${spec.bastion.user}@${bastion.address}`, 'true']);
    expect(closed.stderr).toMatch(DROPPED);

    const t1 = Date.now();
    await driver.deleteResources(ctx, [...records]);
    expect(await driver.sweep(ctx)).toEqual([]);
    console.log(`deprovision: ${Date.now() - t1} ms`);
    const { stdout } = await execFileAsync('ip', ['netns', 'list']);
    expect(stdout.split('\n').filter((l) => l.startsWith(`${prefix}-vm`))).toEqual([]);
  });
});
