import { beforeEach, describe, expect, it } from 'vitest';
import { ConflictError, ErrorName, NotFoundError, ValidationError } from '../../core/errors.ts';
import { cancelDeployment } from '../../core/usecases/cancel.ts';
import { deleteSecrets, summarize } from '../../core/usecases/finalize.ts';
import { getDeployment, getLogs, listDeployments } from '../../core/usecases/queries.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { abortStragglers, awaitDependencies, gracePeriod, recordStepFailure, recordStepResult } from '../../core/usecases/workflow.ts';
import { bastionOpened, memoryDeps } from '../helpers/memoryEngine.ts';

const deployment = (steps: { id: string; dependsOn?: string[] }[]) => ({
  name: 'demo',
  bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
  workflow: { steps: steps.map((s) => ({ action: 'run', command: 'true', ...s })) },
});

// a → b, a → c, (b, c) → d
const diamond = deployment([{ id: 'a' }, { id: 'b', dependsOn: ['a'] }, { id: 'c', dependsOn: ['a'] }, { id: 'd', dependsOn: ['b', 'c'] }]);

describe('Use-case: submitDeployment', () => {
  let deps: ReturnType<typeof memoryDeps>;
  beforeEach(() => {
    deps = memoryDeps();
  });

  it('stores nothing and names the field when the deployment is invalid', async () => {
    const bad = deployment([{ id: 'a', dependsOn: ['nope'] }]);
    await expect(submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: bad })).rejects.toThrow(
      /workflow\.steps\[0\]\.dependsOn\[0\]/,
    );
    expect((await listDeployments(deps, 't1', {})).items).toEqual([]);
    expect(deps.executions.started).toEqual([]);
  });

  const base = () => ({
    ...deployment([{ id: 'a' }]),
    vms: [{ name: 'web1', network: 'private', image: 'debian-12', flavor: 'm1.small' }],
    networks: [{ name: 'private' }],
  });
  it.each<[string, (d: ReturnType<typeof base>) => unknown, RegExp]>([
    ['an unknown key', (d) => ({ ...d, vms: [{ ...d.vms[0], netwrok: 'x' }] }), /vms\[0\]: unknown key "netwrok"/],
    ['a duplicate step id', (d) => ({ ...d, workflow: { steps: [...d.workflow.steps, ...d.workflow.steps] } }), /workflow\.steps\[1\]\.id: duplicate step id "a"/],
    ['an unknown dependency', (d) => ({ ...d, workflow: { steps: [{ ...d.workflow.steps[0], dependsOn: ['bulid'] }] } }), /workflow\.steps\[0\]\.dependsOn\[0\]: unknown step "bulid"/],
    [
      'a dependency cycle',
      (d) => ({ ...d, workflow: { steps: [{ id: 'a', action: 'run', command: 'x', dependsOn: ['b'] }, { id: 'b', action: 'run', command: 'x', dependsOn: ['a'] }] } }),
      /dependency cycle a → b → a/,
    ],
    ['a target that is not a declared VM', (d) => ({ ...d, workflow: { steps: [{ id: 's', action: 'ssh', command: 'x', targets: ['web9'] }] } }), /targets\[0\].*web9/],
    ['an oversize bundle', (d) => ({ ...d, files: { 'big.bin': 'x'.repeat(300 * 1024) } }), /files: bundle is \d+ bytes/],
    ['path traversal', (d) => ({ ...d, files: { '../etc/passwd': 'x' } }), /files\["\.\.\/etc\/passwd"\]/],
  ])('rejects %s with a message naming the field, and stores nothing', async (_kind, mutate, message) => {
    await expect(submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: mutate(base()) })).rejects.toThrow(message);
    expect((await listDeployments(deps, 't1', {})).items).toEqual([]);
    expect(deps.executions.started).toEqual([]);
  });

  it('stores the deployment with its steps and encrypted secrets, and starts the execution named after it', async () => {
    const res = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: diamond });
    expect(res.created).toBe(true);
    expect(deps.executions.started).toEqual([{ name: res.deploymentId, input: { deploymentId: res.deploymentId } }]);
    const view = await getDeployment(deps, 't1', res.deploymentId);
    expect(view.steps.map((s) => s.stepId)).toEqual(['bastion-open', 'a', 'b', 'c', 'd', 'bastion-close']);
    expect(view.consoleUrl).toContain(res.deploymentId);
    const secrets = await deps.store.getSecrets(res.deploymentId);
    expect(secrets?.tokenCiphertext).not.toContain('tok-t1');
    expect(secrets?.sshPrivateKeySealed).not.toContain('PRIVATE KEY');
    expect(secrets?.sshPublicKey).toMatch(/^ssh-ed25519 /);
  });

  it('replays an Idempotency-Key and refuses the key for a different request', async () => {
    const first = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: diamond, idempotencyKey: 'k1' });
    const again = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: diamond, idempotencyKey: 'k1' });
    expect(again).toMatchObject({ deploymentId: first.deploymentId, created: false });
    expect(deps.executions.started).toHaveLength(1);
    await expect(
      submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: deployment([{ id: 'x' }]), idempotencyKey: 'k1' }),
    ).rejects.toBeInstanceOf(ConflictError);
  });

  it('hides one tenant\'s deployments from another', async () => {
    const res = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: diamond });
    await expect(getDeployment(deps, 't2', res.deploymentId)).rejects.toBeInstanceOf(NotFoundError);
    expect((await listDeployments(deps, 't2', {})).items).toEqual([]);
    await expect(listDeployments(deps, 't1', { limit: '0' })).rejects.toBeInstanceOf(ValidationError);
  });
});

describe('Use-case: scheduling (awaitDependencies, recordStepResult, recordStepFailure)', () => {
  let deps: ReturnType<typeof memoryDeps>;
  let id: string;
  const status = async (stepId: string) => (await deps.store.getStep(id, stepId))?.status;
  const answer = (token: string) => deps.executions.answers.get(token);

  beforeEach(async () => {
    deps = memoryDeps();
    id = (await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: diamond })).deploymentId;
    await bastionOpened(deps, id);
  });

  it('releases a step only when all its dependencies succeeded, whichever comes first', async () => {
    await awaitDependencies(deps, { deploymentId: id, stepId: 'a', taskToken: 'ta' });
    await awaitDependencies(deps, { deploymentId: id, stepId: 'd', taskToken: 'td' });
    await awaitDependencies(deps, { deploymentId: id, stepId: 'b', taskToken: 'tb' });
    expect(answer('ta')).toEqual({ ok: true, output: { run: true, timeoutSeconds: 3600 } });
    expect(answer('tb')).toBeUndefined();
    await recordStepResult(deps, { deploymentId: id, stepId: 'a' });
    expect(answer('tb')).toMatchObject({ ok: true, output: { run: true } });
    // c registers after a finished: released at registration.
    await awaitDependencies(deps, { deploymentId: id, stepId: 'c', taskToken: 'tc' });
    expect(answer('tc')).toMatchObject({ ok: true, output: { run: true } });
    await recordStepResult(deps, { deploymentId: id, stepId: 'b' });
    expect(answer('td')).toBeUndefined();
    await recordStepResult(deps, { deploymentId: id, stepId: 'c' });
    expect(answer('td')).toMatchObject({ ok: true, output: { run: true } });
  });

  it('ends a step nothing depends on without a pass over all steps; on a re-run, which the lookahead times, it takes one', async () => {
    // A pass reads every step of the deployment; a Query of all of them in DynamoDB.
    const passes: string[] = [];
    let current = '';
    const getSteps = deps.store.getSteps.bind(deps.store);
    deps.store.getSteps = async (deploymentId) => {
      passes.push(current);
      return getSteps(deploymentId);
    };
    for (const s of ['a', 'b', 'c', 'd']) await awaitDependencies(deps, { deploymentId: id, stepId: s, taskToken: `t${s}` });
    passes.length = 0;
    for (const s of ['a', 'b', 'c', 'd']) {
      current = s;
      await recordStepResult(deps, { deploymentId: id, stepId: s });
    }
    // d's end released nothing and read no step; each of the others released a dependent.
    expect(passes).toEqual(['a', 'b', 'c']);
    expect(answer('td')).toMatchObject({ ok: true, output: { run: true } });
    expect(await status('d')).toBe('succeeded');

    // A re-run knows its steps' durations: the lookahead re-decides by the clock at every pass, a leaf's end among them.
    const rerun = (await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: diamond })).deploymentId;
    await deps.store.updateDeployment(rerun, { expectedStepSeconds: { a: 1, b: 1, c: 1, d: 1 } });
    passes.length = 0;
    current = 'd (re-run)';
    await recordStepResult(deps, { deploymentId: rerun, stepId: 'd' });
    expect(passes).toEqual(['d (re-run)']);
  });

  it('skips what has not started after a failure, opens the grace period once, and ends it when nothing runs', async () => {
    await awaitDependencies(deps, { deploymentId: id, stepId: 'a', taskToken: 'ta' });
    await recordStepResult(deps, { deploymentId: id, stepId: 'a' });
    await awaitDependencies(deps, { deploymentId: id, stepId: 'b', taskToken: 'tb' });
    await awaitDependencies(deps, { deploymentId: id, stepId: 'c', taskToken: 'tc' });
    await awaitDependencies(deps, { deploymentId: id, stepId: 'd', taskToken: 'td' });
    const first = await recordStepFailure(deps, { deploymentId: id, stepId: 'b', error: { Error: ErrorName.StepFailed, Cause: 'command exited 3' } });
    expect(first).toEqual({ startGrace: true });
    expect(await status('d')).toBe('skipped');
    expect(answer('td')).toMatchObject({ ok: true, output: { run: false } });
    expect(await status('c')).toBe('running');

    await gracePeriod(deps, { deploymentId: id, taskToken: 'grace' });
    expect(answer('grace')).toBeUndefined();
    const second = await recordStepFailure(deps, { deploymentId: id, stepId: 'c', error: { Error: ErrorName.StepFailed, Cause: 'x' } });
    expect(second).toEqual({ startGrace: false });
    expect(answer('grace')).toMatchObject({ ok: true });

    const outcome = await summarize(deps, id);
    expect(outcome).toMatchObject({ status: 'FAILED', error: ErrorName.StepFailed, cause: 'step "b" failed: command exited 3' });
  });

  it('aborts stragglers after the grace period: failed token, stopped sandbox', async () => {
    await awaitDependencies(deps, { deploymentId: id, stepId: 'a', taskToken: 'ta' });
    await recordStepResult(deps, { deploymentId: id, stepId: 'a' });
    await awaitDependencies(deps, { deploymentId: id, stepId: 'b', taskToken: 'tb' });
    await awaitDependencies(deps, { deploymentId: id, stepId: 'c', taskToken: 'tc' });
    await deps.store.updateStep(id, 'c', { taskToken: 'sandbox-c', taskArn: 'task/c' });
    await recordStepFailure(deps, { deploymentId: id, stepId: 'b', error: { Error: ErrorName.StepFailed, Cause: 'boom' } });
    expect(await abortStragglers(deps, id)).toEqual({ aborted: ['c'] });
    expect(answer('sandbox-c')).toMatchObject({ ok: false, error: ErrorName.StepAborted });
    expect(deps.sandboxes.stopped).toEqual(['task/c']);
    expect(await status('c')).toBe('aborted');
    // The aborted iteration's own failure record keeps "aborted" and opens no second grace.
    expect(await recordStepFailure(deps, { deploymentId: id, stepId: 'c', error: { Error: ErrorName.StepAborted } })).toEqual({ startGrace: false });
    expect(await status('c')).toBe('aborted');
  });
});

describe('Use-case: cancelDeployment and deleteSecrets', () => {
  it('cancels waiting and running steps, stops sandboxes, and cleanup deletes the secrets', async () => {
    const deps = memoryDeps();
    const id = (await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: diamond })).deploymentId;
    await bastionOpened(deps, id);
    await awaitDependencies(deps, { deploymentId: id, stepId: 'a', taskToken: 'ta' });
    await deps.store.updateStep(id, 'a', { taskToken: 'sandbox-a', taskArn: 'task/a' });
    await awaitDependencies(deps, { deploymentId: id, stepId: 'b', taskToken: 'tb' });

    expect(await cancelDeployment(deps, 't1', id)).toEqual({ deploymentId: id, status: 'CANCELLING' });
    expect(deps.executions.answers.get('tb')).toMatchObject({ ok: true, output: { run: false } });
    expect(deps.executions.answers.get('sandbox-a')).toMatchObject({ ok: false, error: ErrorName.Cancelled });
    expect(deps.sandboxes.stopped).toEqual(['task/a']);
    await expect(cancelDeployment(deps, 't2', id)).rejects.toBeInstanceOf(NotFoundError);

    const outcome = await deleteSecrets(deps, id, { summary: { status: 'x' } });
    expect(outcome.status).toBe('CANCELLED');
    expect(await deps.store.getSecrets(id)).toBeUndefined();
    const final = await getDeployment(deps, 't1', id);
    expect(final.status).toBe('CANCELLED');
    // The moment of the cancel stays on the record for the timeline, after the status moved on.
    expect(final.cancelledAt).toEqual(expect.any(String));
    await expect(cancelDeployment(deps, 't1', id)).rejects.toBeInstanceOf(ConflictError);
  });
});

describe('Use-case: getLogs', () => {
  it('returns lines in time order across steps, and names an unknown step', async () => {
    const deps = memoryDeps();
    const id = (await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: diamond })).deploymentId;
    const line = (stepId: string, seq: number, at: string) => ({ stepId, attempt: 1, seq, at, stream: 'engine' as const, text: `${stepId} ${seq}` });
    // Written in the store's own order (by step id), as a database would hand them back.
    await deps.store.appendLogs(id, [
      line('bastion-close', 0, '2026-01-01T00:00:09Z'),
      line('bastion-open', 0, '2026-01-01T00:00:01Z'),
      line('a', 0, '2026-01-01T00:00:02Z'),
      line('a', 1, '2026-01-01T00:00:02Z'),
    ]);
    expect((await getLogs(deps, 't1', id)).map((l) => l.text)).toEqual(['bastion-open 0', 'a 0', 'a 1', 'bastion-close 0']);
    await expect(getLogs(deps, 't1', id, 'nosuch')).rejects.toThrow(/unknown step "nosuch"/);
    await expect(getLogs(deps, 't2', id)).rejects.toBeInstanceOf(NotFoundError);
  });
});
