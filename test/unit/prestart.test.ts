import { beforeEach, describe, expect, it, vi } from 'vitest';
import { availableParallelism } from 'node:os';
import { DEFAULT_PRESTART_MAX_WAITING, prestartFromEnv } from '../../adapters/aws/engineDeps.ts';
import { localPrestart } from '../../local/engine.ts';
import { ErrorName, PRESTART_LOST } from '../../core/errors.ts';
import { cancelDeployment } from '../../core/usecases/cancel.ts';
import { summarize } from '../../core/usecases/finalize.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { settle, settleWaiting, verdictFor } from '../../core/usecases/release.ts';
import { awaitRelease, MAKE_ROOM_ROUNDS, makeRoom } from '../../core/usecases/prestartFallback.ts';
import { awaitDependencies, recordStepFailure, recordStepResult } from '../../core/usecases/workflow.ts';
import { sampleLatency, scaleLatency } from '../../local/sandbox/launcher.ts';
import { mulberry32 } from '../../bench/scheduling.ts';
import { runDeployment } from '../helpers/deployments.ts';
import { bastionOpened, memoryDeps } from '../helpers/memoryEngine.ts';

/** Scheduling with sandboxes started ahead of their release (issue 12), on in-memory ports. */

const chain = (n: number, timeoutSeconds = 100) => ({
  name: 'chain',
  bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
  workflow: {
    steps: Array.from({ length: n }, (_, i) => ({
      id: `s${i + 1}`,
      action: 'run',
      command: 'true',
      timeoutSeconds,
      ...(i > 0 ? { dependsOn: [`s${i}`] } : {}),
    })),
  },
});

describe('Use-case: pre-start', () => {
  let deps: ReturnType<typeof memoryDeps>;
  let id: string;
  const step = (stepId: string) => deps.store.getStep(id, stepId);
  const answer = (token: string) => deps.executions.answers.get(token);
  const registerAll = async (n: number) => {
    for (let i = 1; i <= n; i++) await awaitDependencies(deps, { deploymentId: id, stepId: `s${i}`, taskToken: `t${i}` });
  };

  beforeEach(async () => {
    deps = { ...memoryDeps(), prestart: { maxWaiting: 2, maxIdleSeconds: 90 } };
    id = (await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: chain(5) })).deploymentId;
    await bastionOpened(deps, id);
  });

  it('lets a chain start its sandboxes ahead, as far as the cap, with a time limit that covers the wait', async () => {
    await registerAll(5);
    expect(answer('t1')).toEqual({ ok: true, output: { run: true, timeoutSeconds: 100 } });
    // s2 and s3 pre-start (s3's dependency is itself pre-started); s4 waits for the cap.
    expect(answer('t2')).toEqual({ ok: true, output: { run: true, prestart: true, timeoutSeconds: 200, maxIdleSeconds: 90 } });
    expect(answer('t3')).toEqual({ ok: true, output: { run: true, prestart: true, timeoutSeconds: 300, maxIdleSeconds: 90 } });
    expect(answer('t4')).toBeUndefined();
    expect((await step('s2'))?.status).toBe('waiting');

    // s1 succeeds: s2 is released (its sandbox sees `running`), which frees a place for s4.
    await recordStepResult(deps, { deploymentId: id, stepId: 's1' });
    expect((await step('s2'))?.status).toBe('running');
    expect(answer('t4')).toMatchObject({ ok: true, output: { run: true, prestart: true } });
    expect(answer('t5')).toBeUndefined();
  });

  it('answers and stops a waiting sandbox when its step is skipped, and counts its idle time', async () => {
    await registerAll(3);
    // s2's sandbox came up and registered (as sandbox/runner.ts does).
    await deps.store.updateStep(id, 's2', { taskToken: 'box2', taskArn: 'task/2', readyAt: new Date(deps.clock.now()).toISOString() }, { ifStatus: ['waiting'] });
    await recordStepFailure(deps, { deploymentId: id, stepId: 's1', error: { Error: ErrorName.StepFailed, Cause: 'exit 1' } });
    expect((await step('s2'))?.status).toBe('skipped');
    expect(answer('box2')).toMatchObject({ ok: true, output: { skipped: expect.any(String) } });
    expect(deps.sandboxes.stopped).toEqual(['task/2']);
    // s3's sandbox never registered: nothing to stop; it finds its step skipped when it does.
    expect((await step('s3'))?.status).toBe('skipped');
    const summary = await summarize(deps, id);
    expect(summary.idleSandboxSeconds).toBeGreaterThan(0);
    expect((await deps.store.getDeployment(id))?.idleSandboxSeconds).toBe(summary.idleSandboxSeconds);
  });

  it('still skips the step and answers its sandbox when StopTask is refused (the runner stops itself at its next poll)', async () => {
    const logged: string[] = [];
    deps = {
      ...deps,
      log: (message) => void logged.push(message),
      sandboxes: { ...deps.sandboxes, stopTask: () => Promise.reject(new Error('AccessDeniedException: not authorized to perform ecs:StopTask')) },
    };
    await registerAll(2);
    await deps.store.updateStep(id, 's2', { taskToken: 'box2', taskArn: 'task/2', readyAt: new Date(deps.clock.now()).toISOString() }, { ifStatus: ['waiting'] });
    await recordStepFailure(deps, { deploymentId: id, stepId: 's1', error: { Error: ErrorName.StepFailed, Cause: 'exit 1' } });
    expect((await step('s2'))?.status).toBe('skipped');
    expect(answer('box2')).toMatchObject({ ok: true, output: { skipped: expect.any(String) } });
    expect(logged).toContain('could not stop a waiting sandbox; it stops at its next poll');
  });

  it('halts pre-start once ECS refuses one for good: the waiting sandboxes are told to give their places back, and no place goes to another step', async () => {
    await registerAll(5);
    // s2 and s3 pre-started (the cap, 2); s2's sandbox is up; s4 waits for a place.
    await deps.store.updateStep(id, 's2', { taskToken: 'box2', taskArn: 'task/2', readyAt: new Date(deps.clock.now()).toISOString() }, { ifStatus: ['waiting'] });
    expect(answer('t4')).toBeUndefined();
    const quota = { Error: 'AmazonECS.Unknown', Cause: "You've reached the limit on the number of vCPUs you can run concurrently" };
    await awaitRelease(deps, { deploymentId: id, stepId: 's3', taskToken: 'r3', error: quota });

    expect((await deps.store.getDeployment(id))?.prestartHalted).toMatch(/^ECS refused a RunTask \(step s3\): AmazonECS.Unknown: You've reached the limit/);
    // s2's sandbox is marked, and woken to see it now; s3, whose RunTask failed, has no sandbox to mark.
    expect((await step('s2'))?.prestartHaltedAt).toBeDefined();
    expect(deps.sandboxes.woken).toEqual(['task/2']);
    expect((await step('s3'))).toMatchObject({ status: 'waiting', prestartFailure: expect.stringContaining('vCPUs') });
    expect((await step('s3'))?.prestartHaltedAt).toBeUndefined();

    // s2's sandbox gives its place back (sandbox/runner.ts): both places are free, yet s4 is not pre-started.
    await awaitRelease(deps, { deploymentId: id, stepId: 's2', taskToken: 'r2', error: { Error: PRESTART_LOST, Cause: 'gave its place back' } });
    await settleWaiting(deps, id);
    expect(answer('t4')).toBeUndefined();
    expect(await deps.store.claimPrestart(id, 100)).toBe(false);
    // The state machine retrying AwaitRelease halts nothing twice and wakes no one again.
    await awaitRelease(deps, { deploymentId: id, stepId: 's3', taskToken: 'r3', error: quota });
    expect(deps.sandboxes.woken).toEqual(['task/2']);

    // Each step now starts at its release, as with pre-start off.
    await recordStepResult(deps, { deploymentId: id, stepId: 's1' });
    expect(answer('r2')).toEqual({ ok: true, output: { run: true, timeoutSeconds: 100 } });
    expect(answer('t4')).toBeUndefined();
  });

  it("makes room for a released step ECS refused: pre-start halts, the waiting sandboxes are marked, and the step starts again", async () => {
    await registerAll(5);
    const quota = { Error: 'AmazonECS.Unknown', Cause: "You've reached the limit on the number of vCPUs you can run concurrently" };
    // s1 was released (no sandbox of its own ahead); s2 and s3 wait with theirs.
    expect((await step('s1'))?.status).toBe('running');
    await makeRoom(deps, { deploymentId: id, stepId: 's1', taskToken: 'm1', error: quota });
    expect(answer('m1')).toEqual({ ok: true, output: { run: true, timeoutSeconds: 100 } });
    expect((await deps.store.getDeployment(id))?.prestartHalted).toMatch(/^ECS refused a RunTask \(step s1\)/);
    for (const s of ['s2', 's3']) expect((await step(s))?.prestartHaltedAt, s).toBeDefined();
    const logs = await deps.store.getLogs(id, { stepId: 's1' });
    expect(logs.map((l) => l.text)).toContain(`ECS refused the step's sandbox (AmazonECS.Unknown: ${quota.Cause}) while 2 started ahead for other steps held places; they give them back and the step starts again`);

    // Refused again after they gave their places back: their tasks may still be stopping, so one more round…
    for (const s of ['s2', 's3']) await awaitRelease(deps, { deploymentId: id, stepId: s, taskToken: `r-${s}`, error: { Error: PRESTART_LOST, Cause: 'gave its place back' } });
    await makeRoom(deps, { deploymentId: id, stepId: 's1', taskToken: 'm1b', error: quota });
    expect(answer('m1b')).toMatchObject({ ok: true, output: { run: true } });
    // …and then the step fails with ECS's own error, as without pre-start.
    expect(MAKE_ROOM_ROUNDS).toBe(2);
    await makeRoom(deps, { deploymentId: id, stepId: 's1', taskToken: 'm1c', error: quota });
    expect(answer('m1c')).toEqual({ ok: false, error: quota.Error, cause: quota.Cause });
    expect((await step('s1'))?.makeRoomRounds).toBe(2);
  });

  it('fails a released step ECS refused as before when pre-start is off, or no sandbox of the deployment waited', async () => {
    const throttled = { Error: 'ECS.ThrottlingException', Cause: 'Rate exceeded' };
    await registerAll(1);
    // Pre-start on, nothing started ahead yet (s2 never registered): no room to make.
    await makeRoom(deps, { deploymentId: id, stepId: 's1', taskToken: 'm1', error: throttled });
    expect(answer('m1')).toEqual({ ok: false, error: throttled.Error, cause: throttled.Cause });
    // Pre-start off: not even a halt is written.
    const off = { ...memoryDeps(), prestart: undefined };
    const other = (await submitDeployment(off, { tenantId: 't1', token: 'tok-t1', body: chain(2) })).deploymentId;
    await bastionOpened(off, other);
    await awaitDependencies(off, { deploymentId: other, stepId: 's1', taskToken: 'o1' });
    await makeRoom(off, { deploymentId: other, stepId: 's1', taskToken: 'm-off', error: throttled });
    expect(off.executions.answers.get('m-off')).toEqual({ ok: false, error: throttled.Error, cause: throttled.Cause });
    expect((await off.store.getDeployment(other))?.prestartHalted).toBeUndefined();
  });

  it("fails a released step ECS refused with ECS's error when the deployment winds down, or the store fails", async () => {
    const quota = { Error: 'AmazonECS.Unknown', Cause: "You've reached the limit on the number of vCPUs you can run concurrently" };
    await registerAll(3);
    await recordStepFailure(deps, { deploymentId: id, stepId: 's2', error: { Error: ErrorName.StepFailed, Cause: 'exit 1' } });
    await makeRoom(deps, { deploymentId: id, stepId: 's1', taskToken: 'm-grace', error: quota });
    expect(answer('m-grace')).toEqual({ ok: false, error: quota.Error, cause: quota.Cause });
    // Decided before any halt: nothing new starts in a deployment that winds down.
    expect((await deps.store.getDeployment(id))?.graceStartedAt).toBeDefined();
    expect((await deps.store.getDeployment(id))?.prestartHalted).toBeUndefined();

    const broken = { ...memoryDeps(), prestart: { maxWaiting: 2 } };
    const other = (await submitDeployment(broken, { tenantId: 't1', token: 'tok-t1', body: chain(3) })).deploymentId;
    await bastionOpened(broken, other);
    for (let i = 1; i <= 3; i++) await awaitDependencies(broken, { deploymentId: other, stepId: `s${i}`, taskToken: `b${i}` });
    broken.store.getSteps = () => Promise.reject(new Error('ProvisionedThroughputExceededException'));
    await makeRoom(broken, { deploymentId: other, stepId: 's1', taskToken: 'm-broken', error: quota });
    expect(broken.executions.answers.get('m-broken')).toEqual({ ok: false, error: quota.Error, cause: quota.Cause });
  });

  it('fails a waiting sandbox with Ctd.Cancelled when the deployment is cancelled', async () => {
    await registerAll(2);
    await deps.store.updateStep(id, 's2', { taskToken: 'box2', taskArn: 'task/2' }, { ifStatus: ['waiting'] });
    await cancelDeployment(deps, 't1', id);
    expect((await step('s2'))?.status).toBe('cancelled');
    expect(answer('box2')).toMatchObject({ ok: false, error: ErrorName.Cancelled });
    expect(deps.sandboxes.stopped).toContain('task/2');
  });

  it("decides a chain's whole pre-start pass while the sandboxes' answers are still on their way", async () => {
    deps.prestart = { maxWaiting: 4 };
    for (let i = 2; i <= 5; i++) await awaitDependencies(deps, { deploymentId: id, stepId: `s${i}`, taskToken: `t${i}` });
    // Step Functions is slow to take s2's answer; s3..s5 are decided (and answered) meanwhile, not after it.
    let deliver!: () => void;
    const held = new Promise<void>((resolve) => (deliver = resolve));
    const send = deps.executions.sendTaskSuccess.bind(deps.executions);
    deps.executions.sendTaskSuccess = async (token, output) => {
      if (token === 't2') await held;
      return send(token, output);
    };
    let returned = false;
    const registering = awaitDependencies(deps, { deploymentId: id, stepId: 's1', taskToken: 't1' }).then(() => (returned = true));
    await waitUntil(async () => answer('t5') !== undefined);
    expect((await step('s5'))?.prestartedAt).toBeDefined();
    expect(answer('t2')).toBeUndefined();
    // The pre-start's one write already dropped the token that is being answered (no second write after the answer).
    expect(await step('s2')).toMatchObject({ prestartedAt: expect.any(String) });
    expect((await step('s2'))?.awaitToken).toBeUndefined();
    // The invocation itself still ends only once every answer is delivered: nothing is left to a frozen Lambda.
    expect(returned).toBe(false);
    deliver();
    await registering;
    expect(answer('t2')).toMatchObject({ ok: true, output: { run: true, prestart: true } });
    expect((await step('s2'))?.awaitToken).toBeUndefined();
  });

  it("releases a dependent right after the step's own success is written, which also drops its sandbox fields", async () => {
    await registerAll(2);
    await deps.store.applyStepTransition(id, 's1', { name: 'start-attempt', by: 'runner', fields: { attempt: 1, taskToken: 'box1', taskArn: 'task/1' } });
    const calls: string[] = [];
    const store = deps.store;
    for (const name of ['applyStepTransition', 'clearStepFields', 'updateStep', 'getDeployment', 'getSteps', 'getStep'] as const) {
      const original = store[name].bind(store) as (...args: unknown[]) => Promise<unknown>;
      (store as unknown as Record<string, unknown>)[name] = (...args: unknown[]) => {
        const request = args[2] as { name?: string } | undefined;
        calls.push(name === 'applyStepTransition' ? `${name} ${String(args[1])} ${request?.name ?? ''}` : name);
        return original(...args);
      };
    }
    await recordStepResult(deps, { deploymentId: id, stepId: 's1' });
    expect(calls.slice(0, calls.indexOf('applyStepTransition s2 release') + 1)).toEqual([
      'applyStepTransition s1 succeed',
      'getDeployment',
      'getSteps',
      'applyStepTransition s2 release',
    ]);
    const s1 = await step('s1');
    expect(s1?.status).toBe('succeeded');
    expect(s1?.taskToken).toBeUndefined();
    expect(s1?.taskArn).toBeUndefined();
  });

  it('pre-starts a step once when passes side by side decide it from the same read', async () => {
    deps.prestart = { maxWaiting: 4 };
    for (let i = 2; i <= 3; i++) await awaitDependencies(deps, { deploymentId: id, stepId: `s${i}`, taskToken: `t${i}` });
    const deployment = (await deps.store.getDeployment(id))!;
    // The read both passes made: s1 already released (running), s2 registered and not yet pre-started.
    await deps.store.applyStepTransition(id, 's1', { name: 'release', by: 'lambda', fields: { startedAt: new Date(deps.clock.now()).toISOString() } });
    const read = new Map((await deps.store.getSteps(id)).map((s) => [s.stepId, s]));
    const s2 = read.get('s2')!;
    expect(verdictFor(s2, deployment, read, deps.prestart, deps.clock.now())).toEqual({ kind: 'prestart' });
    let answered = 0;
    const send = deps.executions.sendTaskSuccess.bind(deps.executions);
    deps.executions.sendTaskSuccess = async (token, output) => {
      if (token === 't2') answered++;
      return send(token, output);
    };
    const [first, second] = await Promise.all([settle(deps, s2, { kind: 'prestart' }, 'lambda', read), settle(deps, s2, { kind: 'prestart' }, 'lambda', read)]);
    // One caller wins the pre-start; the other writes nothing and answers nothing.
    expect([first, second].filter((r) => r !== undefined)).toHaveLength(1);
    expect(answered).toBe(1);
    expect(answer('t2')).toMatchObject({ ok: true, output: { run: true, prestart: true } });
    expect((await step('s2'))?.awaitToken).toBeUndefined();
    // Both took a place under the cap; the one whose write lost gave its back.
    expect((await deps.store.getDeployment(id))?.prestartClaims).toBe(1);
  });

  it("pre-starts a dependent that registered first from its dependency's AwaitDependencies, and reads the steps once for a step nothing waits on", async () => {
    deps.prestart = { maxWaiting: 4 };
    const reads = vi.spyOn(deps.store, 'getSteps');
    // s2 registers while s1 has not started: it waits; s1's AwaitDependencies releases s1 and then pre-starts s2.
    await awaitDependencies(deps, { deploymentId: id, stepId: 's2', taskToken: 't2' });
    expect(answer('t2')).toBeUndefined();
    await awaitDependencies(deps, { deploymentId: id, stepId: 's1', taskToken: 't1' });
    expect(answer('t1')).toEqual({ ok: true, output: { run: true, timeoutSeconds: 100 } });
    expect(answer('t2')).toMatchObject({ ok: true, output: { run: true, prestart: true } });
    // s3 then pre-starts from its own read; s4 and s5 are still undecided, so s3's pass still runs.
    await awaitDependencies(deps, { deploymentId: id, stepId: 's3', taskToken: 't3' });
    expect(answer('t3')).toMatchObject({ ok: true, output: { run: true, prestart: true } });
    reads.mockClear();
    // s4's start may let s5 (undecided) pre-start: its pass reads again. s5, the last, has no dependent: one read.
    await awaitDependencies(deps, { deploymentId: id, stepId: 's4', taskToken: 't4' });
    expect(answer('t4')).toMatchObject({ ok: true, output: { run: true, prestart: true } });
    expect(reads).toHaveBeenCalledTimes(2);
    reads.mockClear();
    await awaitDependencies(deps, { deploymentId: id, stepId: 's5', taskToken: 't5' });
    expect(answer('t5')).toMatchObject({ ok: true, output: { run: true, prestart: true } });
    expect(reads).toHaveBeenCalledTimes(1);
  });

  it('pre-starts, in the same pass, a step that only the release of a step after it in topological order made room for', async () => {
    const body = {
      ...chain(1),
      workflow: {
        steps: [
          { id: 'b1', action: 'run', command: 'true' },
          { id: 'c1', action: 'run', command: 'true' },
          { id: 'c2', action: 'run', command: 'true', dependsOn: ['c1'] },
          { id: 'b2', action: 'run', command: 'true', dependsOn: ['b1'] },
        ],
      },
    };
    deps.prestart = { maxWaiting: 1 };
    const two = (await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body })).deploymentId;
    await bastionOpened(deps, two);
    const { stepIds } = (await deps.store.getDeployment(two))!;
    // What makes the case: c2 comes before b2 in the walk.
    expect(stepIds.indexOf('c2')).toBeLessThan(stepIds.indexOf('b2'));
    for (const stepId of ['b1', 'c1', 'b2', 'c2']) await awaitDependencies(deps, { deploymentId: two, stepId, taskToken: `t-${stepId}` });
    // b2 holds the one place for a waiting sandbox; c2 waits for it.
    expect(answer('t-b2')).toMatchObject({ ok: true, output: { prestart: true } });
    expect(answer('t-c2')).toBeUndefined();
    // b1 succeeds: its pass releases b2, which frees the place, and pre-starts c2 (a walk in topological order alone had passed c2 already).
    await recordStepResult(deps, { deploymentId: two, stepId: 'b1' });
    expect((await deps.store.getStep(two, 'b2'))?.status).toBe('running');
    expect(answer('t-c2')).toMatchObject({ ok: true, output: { run: true, prestart: true } });
  });

  it('releases many roots side by side when bastion-open succeeds, a bounded number at a time', async () => {
    deps.prestart = undefined;
    const body = { ...chain(1), workflow: { steps: Array.from({ length: 40 }, (_, i) => ({ id: `r${i}`, action: 'run', command: 'true' })) } };
    const wide = (await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body })).deploymentId;
    for (let i = 0; i < 40; i++) await awaitDependencies(deps, { deploymentId: wide, stepId: `r${i}`, taskToken: `t-r${i}` });
    await bastionOpened(deps, wide);
    let inFlight = 0;
    let most = 0;
    const apply = deps.store.applyStepTransition.bind(deps.store);
    deps.store.applyStepTransition = async (...args) => {
      if (args[2].name !== 'release') return apply(...args);
      most = Math.max(most, ++inFlight);
      try {
        await new Promise((resolve) => setTimeout(resolve, 2));
        return await apply(...args);
      } finally {
        inFlight--;
      }
    };
    // ReleaseRoots: the RecordStepResult Lambda called for bastion-open.
    await recordStepResult(deps, { deploymentId: wide, stepId: 'bastion-open' });
    const steps = await deps.store.getSteps(wide);
    expect(steps.filter((s) => !s.system).every((s) => s.status === 'running')).toBe(true);
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(16);
  });

  it("decides a step whose dependency has not started from its dependencies' records, without reading every step", async () => {
    await awaitDependencies(deps, { deploymentId: id, stepId: 's1', taskToken: 't1' });
    const reads = vi.spyOn(deps.store, 'getSteps');
    // s3's dependency s2 has not even registered: s3 waits, decided from s2's record alone.
    await awaitDependencies(deps, { deploymentId: id, stepId: 's3', taskToken: 't3' });
    expect(answer('t3')).toBeUndefined();
    expect(await step('s3')).toMatchObject({ status: 'waiting', awaitToken: 't3' });
    expect((await step('s3'))?.prestartedAt).toBeUndefined();
    expect(reads).not.toHaveBeenCalled();
    // Its dependency's pre-start then lets it pre-start (a pass over the whole deployment, as before).
    await awaitDependencies(deps, { deploymentId: id, stepId: 's2', taskToken: 't2' });
    expect(answer('t3')).toMatchObject({ ok: true, output: { run: true, prestart: true } });
  });

  it('counts, for the pre-start cap, the waiting sandboxes of steps that are not among its dependencies', async () => {
    deps.prestart = { maxWaiting: 1 };
    const body = {
      ...chain(1),
      workflow: {
        steps: [
          { id: 'a1', action: 'run', command: 'true' },
          { id: 'a2', action: 'run', command: 'true', dependsOn: ['a1'] },
          { id: 'b1', action: 'run', command: 'true' },
          { id: 'b2', action: 'run', command: 'true', dependsOn: ['b1'] },
        ],
      },
    };
    id = (await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body })).deploymentId;
    await bastionOpened(deps, id);
    for (const s of ['a1', 'a2', 'b1']) await awaitDependencies(deps, { deploymentId: id, stepId: s, taskToken: `t-${s}` });
    expect(answer('t-a2')).toMatchObject({ ok: true, output: { prestart: true } });
    expect(answer('t-b1')).toMatchObject({ ok: true, output: { run: true } });
    // b2's own dependency (b1) runs and holds no waiting sandbox, but a2's fills the cap of 1: b2 waits.
    await awaitDependencies(deps, { deploymentId: id, stepId: 'b2', taskToken: 't-b2' });
    expect(answer('t-b2')).toBeUndefined();
    expect((await step('b2'))?.prestartedAt).toBeUndefined();
    // a2's release frees the place: b2 pre-starts in a1's pass.
    await recordStepResult(deps, { deploymentId: id, stepId: 'a1' });
    expect(answer('t-b2')).toMatchObject({ ok: true, output: { run: true, prestart: true } });
  });

  it('does not pre-start when switched off', async () => {
    deps.prestart = undefined;
    await registerAll(3);
    expect(answer('t2')).toBeUndefined();
    expect(answer('t3')).toBeUndefined();
  });
});

async function waitUntil(done: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await done()) return;
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  throw new Error('condition not reached');
}

describe('Config: the local engine\'s cap', () => {
  beforeEach(() => {
    vi.unstubAllEnvs();
    vi.stubEnv('CTD_PRESTART_MAX_WAITING', undefined);
  });

  it('is twice the core count without a simulated start, the engine default with one, and as set when set', () => {
    const cores = availableParallelism();
    expect(localPrestart({}, 1)).toMatchObject({ maxWaiting: 2 * cores });
    expect(localPrestart({ sandboxStartLatency: { median: 45, p90: 60 } }, 0.2)).toMatchObject({ maxWaiting: DEFAULT_PRESTART_MAX_WAITING });
    expect(localPrestart({ sandboxStartLatencyMs: 1500 }, 1)).toMatchObject({ maxWaiting: DEFAULT_PRESTART_MAX_WAITING });
    expect(localPrestart({ prestart: { maxWaiting: 3 } }, 1)).toEqual({ maxWaiting: 3 });
    vi.stubEnv('CTD_PRESTART_MAX_WAITING', '7');
    expect(localPrestart({}, 1)).toMatchObject({ maxWaiting: 7 });
    vi.unstubAllEnvs();
  });
});

describe('Config: CTD_PRESTART', () => {
  it('is on by default, off on request, and names a bad value', () => {
    expect(prestartFromEnv({})).toEqual({ maxWaiting: 100, startSeconds: 60, maxIdleSeconds: 600 });
    expect(prestartFromEnv({ CTD_PRESTART: 'off' })).toBe(false);
    expect(prestartFromEnv({ CTD_PRESTART_MAX_WAITING: '5', CTD_PRESTART_START_SECONDS: '45', CTD_PRESTART_MAX_IDLE_SECONDS: '90' })).toEqual({ maxWaiting: 5, startSeconds: 45, maxIdleSeconds: 90 });
    expect(() => prestartFromEnv({ CTD_PRESTART_MAX_IDLE_SECONDS: '-1' })).toThrow(/CTD_PRESTART_MAX_IDLE_SECONDS must be a number of seconds > 0, not "-1"/);
    expect(() => prestartFromEnv({ CTD_PRESTART_MAX_IDLE_SECONDS: '100' })).toThrow(
      'CTD_PRESTART_MAX_IDLE_SECONDS must be at least 2 × the start to hide, 120 s: the lookahead starts a sandbox up to 2 starts before its release (CTD_PRESTART_START_SECONDS)',
    );
    expect(prestartFromEnv({ CTD_PRESTART_MAX_IDLE_SECONDS: '100', CTD_PRESTART_START_SECONDS: '45' })).toMatchObject({ maxIdleSeconds: 100 });
    expect(() => prestartFromEnv({ CTD_PRESTART_START_SECONDS: 'soon' })).toThrow(/CTD_PRESTART_START_SECONDS must be a number of seconds > 0, not "soon"/);
    expect(() => prestartFromEnv({ CTD_PRESTART: 'maybe' })).toThrow(/CTD_PRESTART must be on or off/);
    expect(() => prestartFromEnv({ CTD_PRESTART_MAX_WAITING: '0' })).toThrow(/CTD_PRESTART_MAX_WAITING/);
  });
});

describe('Local ECS: start latency distribution', () => {
  it('draws a log-normal with the given median and p90, time-scaled', () => {
    const latency = scaleLatency({ median: 45, p90: 60, random: mulberry32(1) }, 0.1);
    const draws = Array.from({ length: 4000 }, () => sampleLatency(latency)).sort((a, b) => a - b);
    const at = (p: number) => draws[Math.floor(p * draws.length)]!;
    expect(at(0.5)).toBeGreaterThan(4500 * 0.95);
    expect(at(0.5)).toBeLessThan(4500 * 1.05);
    expect(at(0.9)).toBeGreaterThan(6000 * 0.95);
    expect(at(0.9)).toBeLessThan(6000 * 1.05);
  });

  it('refuses a p90 below the median', () => {
    expect(() => scaleLatency({ median: 60, p90: 45 }, 1)).toThrow(/median ≤ p90/);
  });
});

describe('Use-case: no pre-start behind a dependency that has run as long as a sandbox may idle', () => {
  const fanOut = runDeployment([
    { id: 'a', command: 'true' },
    { id: 'b1', command: 'true', dependsOn: ['a'] },
    { id: 'b2', command: 'true', dependsOn: ['a'] },
  ]);

  it("gives a place freed by an idled-out sandbox to no step behind the same long run, until it is no longer long", async () => {
    const deps = { ...memoryDeps(), prestart: { maxWaiting: 1, maxIdleSeconds: 30 } };
    const { deploymentId: id } = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: fanOut });
    await bastionOpened(deps, id);
    for (const stepId of ['a', 'b1', 'b2']) await awaitDependencies(deps, { deploymentId: id, stepId, taskToken: `t-${stepId}` });
    expect((await deps.store.getStep(id, 'a'))?.status).toBe('running');
    expect(deps.executions.answers.get('t-b1')).toMatchObject({ ok: true, output: { prestart: true } });
    expect(deps.executions.answers.get('t-b2')).toBeUndefined();

    // b1's sandbox waited its 30 s and gave up (PRESTART_LOST → AwaitRelease): its place under the cap is free.
    await awaitRelease(deps, { deploymentId: id, stepId: 'b1', taskToken: 'r-b1', error: { Error: PRESTART_LOST, Cause: 'the sandbox started ahead of the release waited 30 s for it' } });
    const runFor = (ms: number) => deps.store.updateStep(id, 'a', { startedAt: new Date(deps.clock.now() - ms).toISOString() });
    await runFor(40_000);
    await settleWaiting(deps, id);
    expect((await deps.store.getStep(id, 'b2'))?.prestartedAt).toBeUndefined();
    expect(deps.executions.answers.get('t-b2')).toBeUndefined();

    // The same place, with a that has run for less than the limit: b2 gets it.
    await runFor(10_000);
    await settleWaiting(deps, id);
    expect(deps.executions.answers.get('t-b2')).toMatchObject({ ok: true, output: { prestart: true } });
  });

  it('leaves a long step the last run measured to the lookahead, until it runs past what was measured', async () => {
    const deps = { ...memoryDeps(), prestart: { maxWaiting: 1, maxIdleSeconds: 30 } };
    const { deploymentId: id } = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: fanOut });
    // The last run of this workflow: a took an hour.
    await deps.store.updateDeployment(id, { expectedStepSeconds: { a: 3600, b1: 1, b2: 1 } });
    await bastionOpened(deps, id);
    for (const stepId of ['a', 'b1', 'b2']) await awaitDependencies(deps, { deploymentId: id, stepId, taskToken: `t-${stepId}` });
    await awaitRelease(deps, { deploymentId: id, stepId: 'b1', taskToken: 'r-b1', error: { Error: PRESTART_LOST, Cause: 'lost' } });
    const runFor = (ms: number) => deps.store.updateStep(id, 'a', { startedAt: new Date(deps.clock.now() - ms).toISOString() });
    // Past the hour measured: longer than expected, so a long run; no sandbox starts behind it.
    await runFor(3_700_000);
    await settleWaiting(deps, id);
    expect(deps.executions.answers.get('t-b2')).toBeUndefined();
    // Past the idle limit but short of the hour measured: the lookahead's to time (with no startSeconds, due at once).
    await runFor(40_000);
    await settleWaiting(deps, id);
    expect(deps.executions.answers.get('t-b2')).toMatchObject({ ok: true, output: { prestart: true } });
  });
});
