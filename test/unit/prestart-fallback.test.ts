import { beforeEach, describe, expect, it } from 'vitest';
import { ErrorName, PRESTART_LOST } from '../../core/errors.ts';
import { Metric } from '../../core/metrics.ts';
import { cancelDeployment } from '../../core/usecases/cancel.ts';
import { awaitRelease } from '../../core/usecases/prestartFallback.ts';
import { getDeployment } from '../../core/usecases/queries.ts';
import { sandboxStopped } from '../../core/usecases/sandboxStopped.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { idleSandboxSeconds, verdictFor } from '../../core/usecases/release.ts';
import { awaitDependencies, recordStepFailure, recordStepResult } from '../../core/usecases/workflow.ts';
import { bastionOpened, memoryDeps } from '../helpers/memoryEngine.ts';

/**
 * A pre-started step whose RunTask failed for good (issue 12's fallback): it waits for its real release
 * (AwaitRelease's token), no longer counts as started or as a waiting sandbox, and is answered at its release or skip.
 */

const chain = (n: number) => ({
  name: 'chain',
  bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
  workflow: {
    steps: Array.from({ length: n }, (_, i) => ({ id: `s${i + 1}`, action: 'run', command: 'true', timeoutSeconds: 100, ...(i > 0 ? { dependsOn: [`s${i}`] } : {}) })),
  },
});

/** What Step Functions' Catch puts at $.error for a RunTask Fargate could not place. */
const NO_CAPACITY = { Error: 'AmazonECS.Unknown', Cause: 'RunTask started no task: [{"reason":"Capacity is unavailable at this time. Please try again later or in a different availability zone"}]' };

describe('Use-case: a pre-start that cannot get a sandbox falls back to a start at release', () => {
  let deps: ReturnType<typeof memoryDeps>;
  let id: string;
  const step = (stepId: string) => deps.store.getStep(id, stepId);
  const answer = (token: string) => deps.executions.answers.get(token);
  const byId = async () => new Map((await deps.store.getSteps(id)).map((s) => [s.stepId, s]));

  beforeEach(async () => {
    deps = { ...memoryDeps(), prestart: { maxWaiting: 2 } };
    id = (await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: chain(4) })).deploymentId;
    await bastionOpened(deps, id);
    for (let i = 1; i <= 4; i++) await awaitDependencies(deps, { deploymentId: id, stepId: `s${i}`, taskToken: `t${i}` });
    // s1 runs; s2 and s3 pre-started (the cap is 2); s4 waits for room.
    expect(answer('t2')).toMatchObject({ ok: true, output: { prestart: true } });
    expect(answer('t3')).toMatchObject({ ok: true, output: { prestart: true } });
    expect(answer('t4')).toBeUndefined();
  });

  it('waits for the release, then answers the new token with a normal start (no pre-start), and the user sees why', async () => {
    const emitted: string[] = [];
    deps.metrics = { emit: (name) => void emitted.push(name) };
    await awaitRelease(deps, { deploymentId: id, stepId: 's2', taskToken: 'r2', error: NO_CAPACITY });
    // Operators see pre-starts falling back (capacity or the vCPU quota short), not a failure.
    expect(emitted).toEqual([Metric.PrestartFallbacks]);
    expect(answer('r2')).toBeUndefined();
    expect(await step('s2')).toMatchObject({ status: 'waiting', awaitToken: 'r2', prestartFailedAt: expect.any(String) });

    await recordStepResult(deps, { deploymentId: id, stepId: 's1' });
    expect((await step('s2'))?.status).toBe('running');
    // A fresh sandbox, as without pre-start: the step's own time limit, no `prestart`.
    expect(answer('r2')).toEqual({ ok: true, output: { run: true, timeoutSeconds: 100 } });

    const view = await getDeployment(deps, 't1', id);
    const s2 = view.steps.find((s) => s.stepId === 's2')!;
    expect(s2.status).toBe('running');
    expect(s2.error).toBeUndefined();
    expect(s2.prestartFailure).toMatch(/^AmazonECS\.Unknown: .*Capacity is unavailable at this time/);
    const lines = await deps.store.getLogs(id);
    expect(lines.map((l) => l.text)).toContainEqual(expect.stringMatching(/sandbox started ahead of the release could not start \(AmazonECS\.Unknown: .*Capacity/));
  });

  it('is no longer started for its dependents, nor a waiting sandbox against the cap', async () => {
    const before = await byId();
    const deployment = (await deps.store.getDeployment(id))!;
    // s3 is pre-started: s4 waits only for the cap (two sandboxes wait: s2, s3).
    expect(verdictFor(before.get('s4')!, deployment, before, deps.prestart, deps.clock.now())).toEqual({ kind: 'wait' });

    await awaitRelease(deps, { deploymentId: id, stepId: 's2', taskToken: 'r2', error: NO_CAPACITY });
    const after = await byId();
    // s2 has no sandbox now: it frees its place under the cap, but a dependent of it would wait...
    expect(verdictFor(after.get('s2')!, deployment, after, deps.prestart, deps.clock.now())).toEqual({ kind: 'wait' });
    // ...and s4 (whose dependency s3 still has its sandbox) may now pre-start in the freed place.
    expect(verdictFor(after.get('s4')!, deployment, after, deps.prestart, deps.clock.now())).toEqual({ kind: 'prestart' });
    // s3's dependency s2 is no longer started: were s3 not pre-started already, it could not be.
    const s3Fresh = { ...after.get('s3')!, prestartedAt: undefined, awaitToken: 'x' };
    expect(verdictFor(s3Fresh, deployment, after, deps.prestart, deps.clock.now())).toEqual({ kind: 'wait' });
  });

  it('starts at once when the step was released while its RunTask was failing', async () => {
    await recordStepResult(deps, { deploymentId: id, stepId: 's1' });
    expect((await step('s2'))?.status).toBe('running');
    const release = await awaitRelease(deps, { deploymentId: id, stepId: 's2', taskToken: 'r2', error: NO_CAPACITY });
    expect(release).toEqual({ run: true, timeoutSeconds: 100 });
    expect(answer('r2')).toEqual({ ok: true, output: { run: true, timeoutSeconds: 100 } });
    expect((await step('s2'))?.prestartFailure).toMatch(/Capacity is unavailable/);
  });

  it('ends skipped when its dependency fails, before or after the fallback registered', async () => {
    await awaitRelease(deps, { deploymentId: id, stepId: 's2', taskToken: 'r2', error: NO_CAPACITY });
    await recordStepFailure(deps, { deploymentId: id, stepId: 's1', error: { Error: ErrorName.StepFailed, Cause: 'exit 1' } });
    expect((await step('s2'))?.status).toBe('skipped');
    expect(answer('r2')).toMatchObject({ ok: true, output: { run: false } });
    // s3's pre-start failed after the skip: its iteration ends skipped too.
    expect((await step('s3'))?.status).toBe('skipped');
    await awaitRelease(deps, { deploymentId: id, stepId: 's3', taskToken: 'r3', error: NO_CAPACITY });
    expect(answer('r3')).toMatchObject({ ok: true, output: { run: false } });
    expect(deps.sandboxes.stopped).toEqual([]);
  });

  it('ends skipped when the deployment is cancelled meanwhile', async () => {
    await awaitRelease(deps, { deploymentId: id, stepId: 's2', taskToken: 'r2', error: NO_CAPACITY });
    await cancelDeployment(deps, 't1', id);
    expect((await step('s2'))?.status).toBe('cancelled');
    expect(answer('r2')).toMatchObject({ ok: true, output: { run: false } });
  });

  it('answers its token when another pass released the step from a read taken before the token was registered', async () => {
    // That pass: it read s2 with no token (its pre-start answered the first), then won the release.
    const stale = (await byId()).get('s2')!;
    await deps.store.applyStepTransition(id, 's1', { name: 'succeed', by: 'lambda', fields: { endedAt: new Date().toISOString() } });
    const registering = deps.store.updateStep.bind(deps.store);
    deps.store.updateStep = async (...args) => {
      const done = await registering(...args);
      // Right after AwaitRelease's registration, the stale pass writes its release (it answers nothing: no token in its read).
      if (args[1] === 's2' && 'awaitToken' in args[2]) {
        await deps.store.applyStepTransition(id, 's2', { name: 'release', by: 'lambda', fields: { startedAt: new Date().toISOString() } });
      }
      return done;
    };
    expect(stale.awaitToken).toBeUndefined();
    await awaitRelease(deps, { deploymentId: id, stepId: 's2', taskToken: 'r2', error: NO_CAPACITY });
    expect(answer('r2')).toEqual({ ok: true, output: { run: true, timeoutSeconds: 100 } });
  });
});

describe('Use-case: a pre-started sandbox lost before its release falls back too (its STOPPED event)', () => {
  let deps: ReturnType<typeof memoryDeps>;
  let id: string;
  const step = (stepId: string) => deps.store.getStep(id, stepId);
  const answer = (token: string) => deps.executions.answers.get(token);
  const spot = (stepId: string) => ({
    deploymentId: id,
    stepId,
    taskArn: `task/${stepId}`,
    taskToken: `sandbox-${stepId}`,
    stopCode: 'SpotInterruption',
    stoppedReason: 'Your Spot Task was interrupted.',
    exitCode: 143,
  });
  /** The sandbox registers on its waiting step, as the runner does. */
  const register = (stepId: string) =>
    deps.store.applyStepTransition(id, stepId, {
      name: 'register-prestarted',
      by: 'runner',
      ifAttempt: 0,
      fields: { attempt: 1, taskToken: `sandbox-${stepId}`, taskArn: `task/${stepId}`, readyAt: new Date(deps.clock.now()).toISOString() },
    });

  beforeEach(async () => {
    deps = { ...memoryDeps(), prestart: { maxWaiting: 2 } };
    id = (await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: chain(3) })).deploymentId;
    await bastionOpened(deps, id);
    for (let i = 1; i <= 3; i++) await awaitDependencies(deps, { deploymentId: id, stepId: `s${i}`, taskToken: `t${i}` });
    expect(answer('t2')).toMatchObject({ ok: true, output: { prestart: true } });
  });

  it('reports Ctd.PrestartLost, not a lost sandbox, and takes the registration back: the fresh sandbox makes attempt 1', async () => {
    expect((await register('s2')).applied).toBe(true);
    expect(await sandboxStopped(deps, spot('s2'))).toEqual({ failed: true });
    expect(answer('sandbox-s2')).toMatchObject({ ok: false, error: PRESTART_LOST, cause: expect.stringContaining('Your Spot Task was interrupted. (SpotInterruption)') });
    const lost = await step('s2');
    expect(lost).toMatchObject({ status: 'waiting', attempt: 0, stopReason: expect.stringContaining('SpotInterruption') });
    expect([lost?.taskToken, lost?.taskArn, lost?.readyAt]).toEqual([undefined, undefined, undefined]);
    // Its wait (readyAt → the stop, on the memory clock's whole seconds) stays in the deployment's idle figure.
    expect(lost?.prestartIdleSeconds).toBeGreaterThanOrEqual(1);
    expect(idleSandboxSeconds(await deps.store.getSteps(id), deps.clock.now())).toBe(lost?.prestartIdleSeconds);

    // The state machine's Catch → PrestartFailed → AwaitRelease, with what the answer said.
    const caught = answer('sandbox-s2') as { error: string; cause: string };
    await awaitRelease(deps, { deploymentId: id, stepId: 's2', taskToken: 'r2', error: { Error: caught.error, Cause: caught.cause } });
    expect((await step('s2'))?.prestartFailure).toBe('the sandbox started ahead of the release was lost: Your Spot Task was interrupted. (SpotInterruption); exit code 143');
    await recordStepResult(deps, { deploymentId: id, stepId: 's1' });
    expect(answer('r2')).toEqual({ ok: true, output: { run: true, timeoutSeconds: 100 } });
    // A late second event for the same task changes nothing: its token was answered.
    expect(await sandboxStopped(deps, spot('s2'))).toEqual({ failed: false });
    expect((await step('s2'))?.attempt).toBe(0);
  });

  it('of a task that failed to start (never registered): Ctd.PrestartLost, and no attempt counted', async () => {
    expect(await sandboxStopped(deps, { ...spot('s2'), stopCode: 'TaskFailedToStart', stoppedReason: 'CannotPullContainerError: ref not found', exitCode: undefined })).toEqual({ failed: true });
    expect(answer('sandbox-s2')).toMatchObject({ ok: false, error: PRESTART_LOST });
    expect(await step('s2')).toMatchObject({ status: 'waiting', attempt: 0, stopReason: 'CannotPullContainerError: ref not found (TaskFailedToStart)' });
  });

  it('once released, a lost sandbox is Ctd.SandboxLost as before (retried once by the state machine)', async () => {
    expect((await register('s2')).applied).toBe(true);
    await recordStepResult(deps, { deploymentId: id, stepId: 's1' });
    expect((await step('s2'))?.status).toBe('running');
    await sandboxStopped(deps, spot('s2'));
    expect(answer('sandbox-s2')).toMatchObject({ ok: false, error: ErrorName.SandboxLost });
    expect((await step('s2'))?.attempt).toBe(1);
  });

  it('a sandbox that is not the step\'s registered one is Ctd.SandboxLost as before', async () => {
    expect((await register('s2')).applied).toBe(true);
    await sandboxStopped(deps, { ...spot('s2'), taskArn: 'task/other', taskToken: 'sandbox-other' });
    expect(answer('sandbox-other')).toMatchObject({ ok: false, error: ErrorName.SandboxLost });
    expect(await step('s2')).toMatchObject({ status: 'waiting', taskArn: 'task/s2', taskToken: 'sandbox-s2' });
  });
});
