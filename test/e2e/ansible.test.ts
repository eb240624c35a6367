import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBundle } from '../../cli/bundle.ts';
import { OpenStackDriver } from '../../adapters/openstack/index.ts';
import { renderUserData } from '../../core/cloudInit.ts';
import { generateDeploymentKey } from '../../core/crypto/deploymentKey.ts';
import { DeploymentSchema, type DeploymentSpec, type StepSpec } from '../../core/deployment/schema.ts';
import { ErrorName, StepError } from '../../core/errors.ts';
import type { CloudContext, CloudDriver } from '../../core/ports.ts';
import { NetnsHypervisor } from '../../local/cloud/backends/netns/index.ts';
import { startLocalCloud, type LocalCloud } from '../../local/cloud/server.ts';
import { createAnsibleAction } from '../../sandbox/actions/ansible.ts';
import type { Action, DeploymentKey } from '../../sandbox/actions/types.ts';
import { actionContext, captureLog } from './helpers/actionContext.ts';
import { leftovers, TENANT } from './helpers/netnsBed.ts';
import { requirePrerequisites } from './helpers/prerequisites.ts';

const execFileAsync = promisify(execFile);
const runSuite = requirePrerequisites({ ansible: true });
const DEPLOYMENT = 'dep-ansible';
const EXAMPLE = join(import.meta.dirname, '../../examples/hello-world-ansible/deployment.yaml');
/** The aborted playbook's task: it would run this long; a stop must end the step within a quarter of it. */
const LONG_TASK_SECONDS = 240;

/** The example with one extra ansible step running `playbook` (given inline) on `targets`. */
function withPlaybook(spec: DeploymentSpec, playbook: string, targets = ['web1', 'web2']): DeploymentSpec {
  const step: StepSpec = { id: 'extra', action: 'ansible', dependsOn: [], targets, playbook: 'extra.yml' };
  return { ...spec, files: { ...spec.files, 'extra.yml': playbook }, workflow: { steps: [...spec.workflow.steps, step] } };
}

async function expectStepError(p: Promise<unknown>): Promise<StepError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(StepError);
  return e as StepError;
}

describe.skipIf(!runSuite)('Action: ansible (netns hypervisor, real OpenSSH and ansible-playbook)', () => {
  const prefix = `ctd${randomBytes(2).toString('hex')}`;
  let stateDir: string;
  let localCloud: LocalCloud;
  let hv: NetnsHypervisor;
  let token: string;
  let key: DeploymentKey;
  let cloud: CloudDriver;
  let spec: DeploymentSpec;
  let ansible: Action;

  const ctxFor = (s: DeploymentSpec, stepId: string, signal?: AbortSignal) =>
    actionContext({ spec: s, stepId, deploymentId: DEPLOYMENT, key, cloud, token, workRoot: stateDir, ...(signal ? { signal } : {}) });

  beforeAll(async () => {
    spec = DeploymentSchema.parse(await readBundle(EXAMPLE));
    stateDir = await mkdtemp(join(tmpdir(), 'ctd-ansible-netns-'));
    hv = new NetnsHypervisor({ stateDir, prefix });
    localCloud = await startLocalCloud({ stateDir, hypervisor: hv, floatingCidr: hv.layout.floatingRange.cidr });
    token = await localCloud.mintToken(TENANT);
    key = generateDeploymentKey(DEPLOYMENT);
    cloud = new OpenStackDriver({ keystoneUrl: localCloud.keystoneUrl, egressCidrs: [await localCloud.egressAddress()], pollIntervalMs: 100 });
    ansible = createAnsibleAction({ commandPrefix: hv.sandboxCommandPrefix() });
    // What provision and bastion-open would have done, through the production driver.
    const ctx: CloudContext = { token, deploymentId: DEPLOYMENT, record: async () => undefined, forget: async () => undefined };
    for (const [index, network] of spec.networks.entries()) await cloud.ensureNetwork(ctx, { network, index });
    for (const group of spec.securityGroups) await cloud.ensureSecurityGroup(ctx, group);
    await Promise.all(spec.vms.map((vm) => cloud.ensureVm(ctx, { vm, userData: renderUserData(vm, key.publicKey) })));
    for (const cidr of await cloud.egressCidrs(ctx)) await cloud.openBastionRule(ctx, { securityGroup: spec.bastion.securityGroup, cidr, port: 22 });
    await cloud.grantBastionAccess(ctx, { server: spec.bastion.server, publicKey: key.publicKey });
  });

  afterAll(async () => {
    await localCloud?.close();
    if (stateDir) {
      expect(await leftovers(prefix, stateDir)).toEqual([]);
      await rm(stateDir, { recursive: true, force: true });
    }
  });

  it('deploys the HelloWorld example through the bastion and its check step passes', async () => {
    const deploy = await ctxFor(spec, 'deploy');
    const t0 = Date.now();
    const output = await ansible(deploy);
    console.log(`ansible deploy (site.yml, 2 VMs): ${Date.now() - t0} ms`);
    expect(output).toMatchObject({
      playbook: 'site.yml',
      hosts: { web1: { failures: 0, unreachable: 0 }, web2: { failures: 0, unreachable: 0 } },
    });
    // Progress streamed per host while the playbook ran.
    expect(deploy.log.lines).toContainEqual({ stream: 'stdout', text: 'TASK [Install hello.py]' });
    expect(deploy.log.lines).toContainEqual({ stream: 'stdout', text: 'changed', host: 'web2' });

    const check = await ctxFor(spec, 'check');
    const t1 = Date.now();
    await expect(ansible(check)).resolves.toMatchObject({ hosts: { web1: { failures: 0 }, web2: { failures: 0 } } });
    console.log(`ansible check (check.yml, 2 VMs): ${Date.now() - t1} ms`);
  });

  it('fails with Ctd.StepFailed naming the task and host when a task fails', async () => {
    const s = withPlaybook(
      spec,
      `- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Break on purpose\n      ansible.builtin.command: /bin/false\n      when: inventory_hostname == 'web1'\n`,
    );
    const e = await expectStepError(ansible(await ctxFor(s, 'extra')));
    expect(e.errorName).toBe(ErrorName.StepFailed);
    expect(e.message).toMatch(/^task "Break on purpose" failed on web1: /);
  });

  it('fails with Ctd.StepFailed, not AnsibleUnreachable, on a playbook syntax error (exit 4)', async () => {
    const s = withPlaybook(spec, `- hosts: all\n  tasks:\n    - name: Bad\n      ansible.builtin.command: [unclosed\n`);
    const e = await expectStepError(ansible(await ctxFor(s, 'extra')));
    expect(e.errorName).toBe(ErrorName.StepFailed);
    expect(e.message).toMatch(/^ansible-playbook exited 4: ERROR!/);
  });

  it('stops ansible-playbook and everything it started when the step is aborted', { timeout: 150_000 }, async () => {
    const s = withPlaybook(spec, `- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Long task\n      ansible.builtin.command: sleep ${LONG_TASK_SECONDS}\n`);
    const controller = new AbortController();
    const ctx = await ctxFor(s, 'extra', controller.signal);
    const log = captureLog();
    ctx.log = log;
    const outcome = ansible(ctx).then(
      () => undefined,
      (err: unknown) => err,
    );
    // Abort once the long task is under way on a VM.
    for (let i = 0; i < 200 && !log.lines.some((l) => l.text === 'TASK [Long task]'); i++) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 500));
    controller.abort();
    // SIGTERM, then SIGKILL after 3 s: the step ends long before its task would (a wide margin for a loaded machine).
    const stillRunning = new Promise<string>((resolve) => setTimeout(() => resolve('still running'), (LONG_TASK_SECONDS / 4) * 1000).unref());
    const e = await Promise.race([outcome, stillRunning]);
    expect(e).toBeInstanceOf(StepError);
    expect((e as StepError).message).toMatch(/stopped/);
    const { stdout } = await execFileAsync('ps', ['-eo', 'pid,stat,args']);
    expect(stdout.split('\n').filter((l) => l.includes(ctx.workDir) && !/ Z/.test(l))).toEqual([]);
  });

  it('fails with Ctd.AnsibleUnreachable naming the host when a VM cannot be reached', async () => {
    const ctx: CloudContext = { token, deploymentId: DEPLOYMENT, record: async () => undefined, forget: async () => undefined };
    const web2 = (await cloud.describeVms(ctx, ['web2']))[0]!;
    const ns = hv.serverNamespace(web2.id!)!;
    const ifName = hv.layout.vmIf(Number(ns.slice(`${prefix}-vm`.length)));
    await execFileAsync('ip', ['-n', ns, 'link', 'set', ifName, 'down']);
    try {
      const t0 = Date.now();
      const e = await expectStepError(ansible(await ctxFor(spec, 'check')));
      console.log(`ansible with web2 unreachable: ${Date.now() - t0} ms`);
      expect(e.errorName).toBe(ErrorName.AnsibleUnreachable);
      expect(e.message).toBe('unreachable: web2');
    } finally {
      await execFileAsync('ip', ['-n', ns, 'link', 'set', ifName, 'up']);
    }
  });
});
