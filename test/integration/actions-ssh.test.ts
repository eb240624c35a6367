import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCloudDriver } from '../../adapters/local/localCloudDriver.ts';
import { DeploymentSchema, type StepSpec } from '../../core/deployment/schema.ts';
import { ErrorName } from '../../core/errors.ts';
import type { DeploymentRecord, StepRecord } from '../../core/model.ts';
import { Ssh2Backend } from '../../local/cloud/backends/ssh2/index.ts';
import { startLocalCloud, type LocalCloud } from '../../local/cloud/server.ts';
import { bastionClose } from '../../sandbox/actions/bastionClose.ts';
import { bastionOpen } from '../../sandbox/actions/bastionOpen.ts';
import { deprovision } from '../../sandbox/actions/deprovision.ts';
import { provision } from '../../sandbox/actions/provision.ts';
import { ssh } from '../../sandbox/actions/ssh.ts';
import type { ActionContext } from '../../sandbox/actions/types.ts';
import { generateSshKeyPair } from '../../core/crypto/deploymentKey.ts';

// This file's own addresses: the example's steps run unchanged against them.
const BASTION = { address: '127.63.0.2', port: 2222 };
const EXAMPLE = join(import.meta.dirname, '../../examples/hello-world');

let stateDir: string;
let cloud: LocalCloud;
let base: Omit<ActionContext, 'step'>;
const logs: { stream: string; text: string; host?: string }[] = [];

function stepCtx(spec: StepSpec, overrides: Partial<ActionContext> = {}): ActionContext {
  const step = { deploymentId: 'dep1', stepId: spec.id, system: false, spec, dependsOn: [], status: 'running', attempt: 1 } as StepRecord;
  return { ...base, step, ...overrides };
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'ctd-actions-'));
  const backend = new Ssh2Backend({ stateDir, bastion: BASTION, vmAddressBase: '127.63.1', vmPort: 2222 });
  cloud = await startLocalCloud({ stateDir, backend });
  const spec = DeploymentSchema.parse({
    ...(parse(await readFile(join(EXAMPLE, 'deployment.yaml'), 'utf8')) as object),
    files: { 'hello.py': await readFile(join(EXAMPLE, 'files/hello.py'), 'utf8') },
  });
  spec.bastion = { ...spec.bastion, ...BASTION };
  const { files, ...topology } = spec;
  const key = generateSshKeyPair('ctd-dep1');
  const deployment = { deploymentId: 'dep1', tenantId: 't1', name: spec.name, status: 'RUNNING', stepIds: [], topology } as unknown as DeploymentRecord;
  base = {
    deployment,
    topology,
    files,
    token: await cloud.mintToken('t1'),
    sshKey: key,
    cloud: new LocalCloudDriver({ endpoint: cloud.url }),
    cloudCtx: { token: '', deploymentId: 'dep1' },
    workDir: stateDir,
    log: { line: (stream, text, host) => logs.push({ stream, text, host }) },
    signal: new AbortController().signal,
    timeScale: 1,
    recordDeployment: async (patch) => {
      Object.assign(deployment, patch);
    },
  };
  base.cloudCtx.token = base.token;
});

afterAll(async () => {
  await cloud?.close();
  await rm(stateDir, { recursive: true, force: true });
});

const stepOf = (id: string) => base.topology.workflow.steps.find((s) => s.id === id)!;

describe('Actions against the local cloud: the hello-world example', () => {
  it('bastion-open records the rule at once and turns forwarding on', async () => {
    const out = await bastionOpen(stepCtx(stepOf('provision')));
    expect(out).toEqual({ ruleId: expect.any(String) });
    expect(base.deployment.bastionRuleId).toBe((out as { ruleId: string }).ruleId);
  });

  it('provision creates the topology and passes the bootstrap check', async () => {
    const out = await provision(stepCtx(stepOf('provision')));
    expect(out).toEqual({ vms: [{ name: 'web1', address: '127.63.1.10' }, { name: 'web2', address: '127.63.1.11' }] });
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

  it('deprovision deletes everything, twice without error; bastion-close is idempotent', async () => {
    await deprovision(stepCtx(stepOf('deprovision')));
    await deprovision(stepCtx(stepOf('deprovision')));
    expect(await base.cloud.describeVms(base.cloudCtx)).toEqual([]);
    expect(await bastionClose(stepCtx(stepOf('deprovision')))).toMatchObject({ closed: true });
    expect(await bastionClose(stepCtx(stepOf('deprovision')))).toMatchObject({ closed: true });
  });

  it('provision reports Ctd.VmBootstrapTimeout for a VM whose key never installs', async () => {
    const broken = { ...base.topology, vms: [{ name: 'broken', network: 'private', securityGroups: [], userData: { bootcmd: ['exit 1'] } }] };
    await bastionOpen(stepCtx(stepOf('provision')));
    const err = await provision(stepCtx(stepOf('provision'), { topology: broken, timeScale: 0.01 })).catch((e: unknown) => e);
    expect(err).toMatchObject({ errorName: ErrorName.VmBootstrapTimeout });
    expect((err as Error).message).toMatch(/^broken was not reachable over SSH through the bastion within 180 s; /);
    await deprovision(stepCtx(stepOf('deprovision'), { topology: broken }));
    await bastionClose(stepCtx(stepOf('deprovision')));
  });
});
