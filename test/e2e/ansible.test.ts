import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readBundle } from '../../cli/bundle.ts';
import { renderUserData } from '../../core/cloudInit.ts';
import { DeploymentSchema, type DeploymentSpec, type StepSpec } from '../../core/deployment/schema.ts';
import { ErrorName, StepError } from '../../core/errors.ts';
import type { CloudDriver } from '../../core/ports.ts';
import { createAnsibleAction } from '../../sandbox/actions/ansible.ts';
import type { Action, DeploymentKey } from '../../sandbox/actions/types.ts';
import { actionContext, captureLog } from './helpers/actionContext.ts';
import { deploymentKey, driverFor, leftovers, scopeOf, startNetnsBed, type NetnsBed } from './helpers/netnsBed.ts';
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

describe.skipIf(!runSuite)('Action: ansible (netns backend, real OpenSSH and ansible-playbook)', () => {
  let bed: NetnsBed;
  let key: DeploymentKey;
  let cloud: CloudDriver;
  let spec: DeploymentSpec;
  let ansible: Action;
  const scope = scopeOf(DEPLOYMENT);

  const ctxFor = (s: DeploymentSpec, stepId: string, signal?: AbortSignal) =>
    actionContext({ spec: s, stepId, deploymentId: DEPLOYMENT, key, cloud, workRoot: bed.stateDir, ...(signal ? { signal } : {}) });

  beforeAll(async () => {
    spec = DeploymentSchema.parse(await readBundle(EXAMPLE));
    bed = await startNetnsBed();
    key = deploymentKey(DEPLOYMENT);
    cloud = driverFor(bed.backend);
    ansible = createAnsibleAction({ commandPrefix: bed.backend.sandboxCommandPrefix() });
    // What provision and bastion-open would have done.
    await Promise.all(spec.vms.map((vm) => bed.backend.createVm(scope, vm, renderUserData(vm, key.publicKey))));
    const cidr = await bed.backend.egressCidr();
    await bed.backend.addBastionRule(scope, { securityGroup: spec.bastion.securityGroup, cidr, port: 22, description: 'e2e' });
    await bed.backend.setBastionForwarding({ securityGroup: spec.bastion.securityGroup, enabled: true });
    for (let i = 0; i < 200 && (await bed.backend.describeVms(scope)).some((v) => v.status !== 'active'); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
  });

  afterAll(async () => {
    if (!bed) return;
    await bed.close();
    expect(await leftovers(bed.prefix, bed.stateDir)).toEqual([]);
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
    const ns = bed.backend.vmNamespace(scope, 'web2')!;
    const ifName = `${bed.prefix}e${ns.slice(`${bed.prefix}-vm`.length)}`;
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
