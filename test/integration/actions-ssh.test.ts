import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OpenStackDriver } from '../../adapters/openstack/index.ts';
import { generateSshKeyPair } from '../../core/crypto/deploymentKey.ts';
import { DeploymentSchema, type StepSpec, type Topology } from '../../core/deployment/schema.ts';
import { ErrorName } from '../../core/errors.ts';
import type { DeploymentRecord, StepRecord } from '../../core/model.ts';
import type { CloudResourceRef } from '../../core/ports.ts';
import { Ssh2Hypervisor } from '../../local/cloud/backends/ssh2/index.ts';
import { pickLoopbackBlock } from '../../local/cloud/loopbackBlock.ts';
import { startLocalCloud, type LocalCloud } from '../../local/cloud/server.ts';
import { bastionClose } from '../../sandbox/actions/bastionClose.ts';
import { bastionOpen } from '../../sandbox/actions/bastionOpen.ts';
import { deprovision } from '../../sandbox/actions/deprovision.ts';
import { provision } from '../../sandbox/actions/provision.ts';
import { ssh } from '../../sandbox/actions/ssh.ts';
import type { ActionContext } from '../../sandbox/actions/types.ts';
import { OsApi, sshLogin } from '../helpers/openstackApi.ts';

/**
 * The sandbox actions through the production OpenStack driver against the local cloud (ssh2
 * hypervisor), on the hello-world example. What each action did is checked from outside: the
 * cloud's API (rules, metadata, servers) and real SSH logins, not the actions' own answers.
 */

const EXAMPLE = join(import.meta.dirname, '../../examples/hello-world');
const DEPLOYMENT = 'd-000000001aaaaaaaaaa';

let stateDir: string;
let cloud: LocalCloud;
let api: OsApi;
let base: Omit<ActionContext, 'step'>;
const records: CloudResourceRef[] = [];
const logs: { stream: string; text: string; host?: string }[] = [];

function stepCtx(spec: StepSpec, overrides: Partial<ActionContext> = {}): ActionContext {
  const step = { deploymentId: DEPLOYMENT, stepId: spec.id, system: false, spec, dependsOn: [], status: 'running', attempt: 1 } as StepRecord;
  return { ...base, step, ...overrides };
}

/** The bastion as the cloud shows it: its group's rules and its server's metadata. */
async function bastionState() {
  const { security_groups } = await api.ok('network', 'GET', '/security-groups?name=bastion');
  const groupId = security_groups[0].id as string;
  const { security_group_rules } = await api.ok('network', 'GET', `/security-group-rules?security_group_id=${groupId}`);
  const { servers } = await api.ok('compute', 'GET', '/servers/detail?name=^bastion$');
  const server = servers[0];
  const floating = Object.values(server.addresses as Record<string, { addr: string; 'OS-EXT-IPS:type': string }[]>)
    .flat()
    .find((a) => a['OS-EXT-IPS:type'] === 'floating')!.addr;
  return {
    deploymentRules: (security_group_rules as { id: string; description: string }[]).filter((r) => r.description?.includes(DEPLOYMENT)),
    accessItems: Object.keys(server.metadata as Record<string, string>).filter((k) => k === `ctd-access-${DEPLOYMENT}`),
    address: floating,
    port: Number(server.metadata.ssh_port ?? 22),
  };
}

/** Whether the deployment key logs in to the bastion (a real SSH login). */
async function keyLogsIn(address: string, port: number): Promise<boolean> {
  return sshLogin({ host: address, port, username: 'ctd', privateKey: base.sshKey.privateKey }).then(
    (a) => {
      a.client.end();
      return true;
    },
    () => false,
  );
}

async function deploymentServers(): Promise<string[]> {
  const { servers } = await api.ok('compute', 'GET', `/servers/detail?name=^ctd-${DEPLOYMENT}-`);
  return (servers as { name: string }[]).map((s) => s.name).sort();
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'ctd-actions-'));
  const block = await pickLoopbackBlock();
  cloud = await startLocalCloud({
    stateDir,
    hypervisor: new Ssh2Hypervisor({ stateDir, listenCidr: block.listenCidr }),
    floatingCidr: block.floatingCidr,
  });
  const token = await cloud.mintToken('t1');
  api = await OsApi.connect(cloud.keystoneUrl, token);
  const spec = DeploymentSchema.parse({
    ...(parse(await readFile(join(EXAMPLE, 'deployment.yaml'), 'utf8')) as object),
    files: { 'hello.py': await readFile(join(EXAMPLE, 'files/hello.py'), 'utf8') },
  });
  const { files, ...topology } = spec;
  const deployment = { deploymentId: DEPLOYMENT, tenantId: 't1', name: spec.name, status: 'RUNNING', stepIds: [], topology } as unknown as DeploymentRecord;
  base = {
    deployment,
    topology,
    files,
    token,
    sshKey: generateSshKeyPair(`ctd-${DEPLOYMENT}`),
    cloud: new OpenStackDriver({ keystoneUrl: cloud.keystoneUrl, egressCidrs: [await cloud.egressAddress()], pollIntervalMs: 50 }),
    cloudCtx: {
      token,
      deploymentId: DEPLOYMENT,
      record: async (ref) => {
        if (!records.some((r) => r.kind === ref.kind && r.id === ref.id)) records.push(ref);
      },
      forget: async (ref) => {
        const i = records.findIndex((r) => r.kind === ref.kind && r.id === ref.id);
        if (i >= 0) records.splice(i, 1);
      },
    },
    recordedResources: async () => [...records],
    workDir: stateDir,
    log: { line: (stream, text, host) => logs.push({ stream, text, host }) },
    signal: new AbortController().signal,
    timeScale: 1,
  };
});

afterAll(async () => {
  await cloud?.close();
  await rm(stateDir, { recursive: true, force: true });
});

const stepOf = (id: string) => base.topology.workflow.steps.find((s) => s.id === id)!;

describe('Actions against the local cloud: the hello-world example', () => {
  it('bastion-open records its rule before anything else, opens the port and lets the deployment key in', async () => {
    const before = await bastionState();
    expect(await keyLogsIn(before.address, before.port)).toBe(false);

    await bastionOpen(stepCtx(stepOf('provision')));
    const after = await bastionState();
    expect(after.deploymentRules).toHaveLength(1);
    expect(records.filter((r) => r.kind === 'bastionRule').map((r) => r.id)).toEqual(after.deploymentRules.map((r) => r.id));
    expect(after.accessItems).toEqual([`ctd-access-${DEPLOYMENT}`]);
    expect(await keyLogsIn(after.address, after.port)).toBe(true);
  });

  it('provision creates the marked topology and passes the bootstrap check', async () => {
    const out = (await provision(stepCtx(stepOf('provision')))) as { vms: { name: string; address: string }[] };
    expect(out.vms.map((v) => v.name)).toEqual(['web1', 'web2']);
    for (const vm of out.vms) expect(vm.address).toMatch(/^10\.0\.0\.\d+$/);
    expect(await deploymentServers()).toEqual([`ctd-${DEPLOYMENT}-web1`, `ctd-${DEPLOYMENT}-web2`]);
    expect(records.map((r) => r.kind)).toEqual(expect.arrayContaining(['network', 'subnet', 'securityGroup', 'port', 'server']));
  });

  it('a retried provision adopts what the first attempt created', async () => {
    const recordedBefore = records.length;
    await provision(stepCtx(stepOf('provision')));
    expect(await deploymentServers()).toEqual([`ctd-${DEPLOYMENT}-web1`, `ctd-${DEPLOYMENT}-web2`]);
    const { networks } = await api.ok('network', 'GET', `/networks?name=ctd-${DEPLOYMENT}-private`);
    expect(networks).toHaveLength(1);
    expect(records).toHaveLength(recordedBefore);
  });

  it('start and check: the service answers on each VM with its own name', async () => {
    logs.length = 0;
    await ssh(stepCtx(stepOf('start')));
    await ssh(stepCtx(stepOf('check')));
    const answers = logs.filter((l) => l.stream === 'stdout').map((l) => `${l.host}: ${l.text}`).sort();
    expect(answers).toEqual(['web1: Hello World from web1', 'web2: Hello World from web2']);
  });

  it('a non-zero exit fails the step naming host and code', async () => {
    const spec = { id: 'fail', action: 'ssh', targets: ['web1', 'web2'], command: '[ "$HOSTNAME" = web2 ] && exit 3; echo fine', files: [], dependsOn: [] } as StepSpec;
    await expect(ssh(stepCtx(spec))).rejects.toMatchObject({ errorName: ErrorName.StepFailed, message: 'command exited 3 on web2' });
  });

  it('deprovision deletes every marked resource, and a second run finds nothing left to fail on', async () => {
    await deprovision(stepCtx(stepOf('deprovision')));
    await deprovision(stepCtx(stepOf('deprovision')));
    expect(await deploymentServers()).toEqual([]);
    for (const collection of ['networks', 'subnets', 'ports', 'security-groups']) {
      const listed = (await api.ok('network', 'GET', `/${collection}`)) as Record<string, { name?: string }[]>;
      const left = Object.values(listed)[0]!.filter((r) => r.name?.startsWith(`ctd-${DEPLOYMENT}-`));
      expect(left, collection).toEqual([]);
    }
  });

  it('bastion-close deletes the rule and the key, so the deployment key no longer logs in; a second close is a no-op', async () => {
    await bastionClose(stepCtx(stepOf('deprovision')));
    const after = await bastionState();
    expect(after.deploymentRules).toEqual([]);
    expect(after.accessItems).toEqual([]);
    expect(await keyLogsIn(after.address, after.port)).toBe(false);
    await expect(bastionClose(stepCtx(stepOf('deprovision')))).resolves.toMatchObject({ closed: false });
  });

  it('bastion-close finds a rule by its description when the record of it was lost', async () => {
    await bastionOpen(stepCtx(stepOf('provision')));
    records.splice(0, records.length);
    expect((await bastionState()).deploymentRules).toHaveLength(1);
    await bastionClose(stepCtx(stepOf('deprovision')));
    expect((await bastionState()).deploymentRules).toEqual([]);
  });

  it('provision reports Ctd.VmBootstrapTimeout for a VM whose key never installs', async () => {
    const broken: Topology = {
      ...base.topology,
      vms: [{ name: 'broken', network: 'private', image: 'debian-12', flavor: 'm1.small', floatingIp: false, securityGroups: [], userData: { bootcmd: ['exit 1'] } }],
    };
    await bastionOpen(stepCtx(stepOf('provision')));
    const err = await provision(stepCtx(stepOf('provision'), { topology: broken, timeScale: 0.01 })).catch((e: unknown) => e);
    expect(err).toMatchObject({ errorName: ErrorName.VmBootstrapTimeout });
    expect((err as Error).message).toMatch(/^broken was not reachable over SSH through the bastion within 180 s; /);
    await deprovision(stepCtx(stepOf('deprovision'), { topology: broken }));
    await bastionClose(stepCtx(stepOf('deprovision')));
    expect(await deploymentServers()).toEqual([]);
  });
});
