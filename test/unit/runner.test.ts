import { describe, expect, it, vi } from 'vitest';
import { ErrorName, StepError, TaskTokenGoneError } from '../../core/errors.ts';
import { cancelDeployment } from '../../core/usecases/cancel.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { awaitDependencies, recordStepFailure, recordStepResult } from '../../core/usecases/workflow.ts';
import { runStep, type RunnerDeps } from '../../sandbox/runner.ts';
import type { Action } from '../../sandbox/actions/types.ts';
import { bastionOpened, memoryDeps, prestartedChain, runnerDepsOf } from '../helpers/memoryEngine.ts';

/** The step runner on in-memory ports, with stand-in actions: what it answers and records. */

const body = {
  name: 'demo',
  bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
  workflow: { steps: [{ id: 'a', action: 'run', command: 'true' }, { id: 'b', action: 'run', command: 'true' }] },
};

async function setup(action: Action) {
  const deps = memoryDeps();
  const { deploymentId } = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1-secret-value', body });
  await bastionOpened(deps, deploymentId);
  await awaitDependencies(deps, { deploymentId, stepId: 'a', taskToken: 'await-a' });
  const runner = runnerDepsOf(deps, { actions: { run: action, 'bastion-open': action, 'bastion-close': action } });
  return { deps, deploymentId, runner };
}

describe('Function: runStep', () => {
  it('hands the action the decrypted token and key, and answers its output', async () => {
    let seen: { token: string; key: string } | undefined;
    const { deps, deploymentId, runner } = await setup(async (ctx) => {
      seen = { token: ctx.token, key: ctx.sshKey.privateKey };
      ctx.log.line('stdout', `my token is ${ctx.token}`);
      return { done: true };
    });
    const outcome = await runStep(runner, { deploymentId, stepId: 'a', taskToken: 'sandbox-a', taskArn: 'task/a' });
    expect(outcome).toEqual({ ok: true, output: { done: true } });
    expect(deps.executions.answers.get('sandbox-a')).toEqual({ ok: true, output: { done: true } });
    expect(seen?.token).toBe('tok-t1-secret-value');
    expect(seen?.key).toContain('BEGIN OPENSSH PRIVATE KEY');
    const step = await deps.store.getStep(deploymentId, 'a');
    expect(step).toMatchObject({ attempt: 1, taskToken: 'sandbox-a', taskArn: 'task/a' });
    // Started at its release, the sandbox marks where the step's own run began (pre-start's durations start there).
    expect(Date.parse(step!.claimedAt!)).toBeGreaterThan(Date.parse(step!.startedAt!));
    const logs = await deps.store.getLogs(deploymentId, { stepId: 'a' });
    expect(logs.map((l) => l.text)).toContain('my token is ***');
    expect(JSON.stringify(logs)).not.toContain('tok-t1-secret-value');
  });

  it('fails with the error table name a StepError carries, and Ctd.StepFailed for anything else', async () => {
    const named = await setup(async () => {
      throw new StepError(ErrorName.BackendUnreachable, 'The backend server is unreachable');
    });
    const a = await runStep(named.runner, { deploymentId: named.deploymentId, stepId: 'a', taskToken: 't1', taskArn: 'x' });
    expect(a).toEqual({ ok: false, error: ErrorName.BackendUnreachable, cause: 'The backend server is unreachable' });
    expect(named.deps.executions.answers.get('t1')).toMatchObject({ ok: false, error: ErrorName.BackendUnreachable });

    const plain = await setup(async () => {
      throw new TypeError('boom');
    });
    const b = await runStep(plain.runner, { deploymentId: plain.deploymentId, stepId: 'a', taskToken: 't2', taskArn: 'x' });
    expect(b).toEqual({ ok: false, error: ErrorName.StepFailed, cause: 'boom' });
  });

  it('refuses to start a step the engine already gave up on', async () => {
    let ran = false;
    const { deps, deploymentId, runner } = await setup(async () => {
      ran = true;
    });
    await recordStepFailure(deps, { deploymentId, stepId: 'a', error: { Error: ErrorName.StepFailed } });
    await awaitDependencies(deps, { deploymentId, stepId: 'b', taskToken: 'await-b' });
    const outcome = await runStep(runner, { deploymentId, stepId: 'b', taskToken: 'sandbox-b', taskArn: 'x' });
    // A skipped step's sandbox answers "skipped" (its iteration ends as the skip path does) and runs nothing.
    expect(outcome).toMatchObject({ ok: true, output: { skipped: 'not started: another step of the deployment failed' } });
    expect(ran).toBe(false);
  });

  it('stops the action when the state machine no longer accepts its heartbeats', async () => {
    const { deps, deploymentId, runner } = await setup(
      (ctx) => new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(new StepError(ErrorName.StepFailed, 'stopped')))),
    );
    deps.executions.sendTaskHeartbeat = async () => {
      throw new TaskTokenGoneError('TaskTimedOut');
    };
    const outcome = await runStep(runner, { deploymentId, stepId: 'a', taskToken: 'sandbox-a', taskArn: 'x' });
    expect(outcome).toMatchObject({ ok: false, error: ErrorName.StepFailed });
  });

  it('records system steps itself', async () => {
    // bastion-open ran in setup (the roots wait on it): bastion-close is the system step left to run.
    const { deps, deploymentId, runner } = await setup(async () => ({ ruleId: 'r1' }));
    await runStep(runner, { deploymentId, stepId: 'bastion-close', taskToken: 'close', taskArn: 'x' });
    expect(await deps.store.getStep(deploymentId, 'bastion-close')).toMatchObject({ status: 'succeeded', output: { ruleId: 'r1' }, attempt: 1 });
  });

  it("stores what the driver records the moment it records it, even when the step then fails", async () => {
    const seen: unknown[] = [];
    const { deps, deploymentId, runner } = await setup(async (ctx) => {
      await ctx.cloudCtx.record({ kind: 'network', id: 'net-1', name: 'private' });
      await ctx.cloudCtx.record({ kind: 'port', id: 'port-1', name: 'web1' });
      seen.push(await deps.store.listCloudResources(deploymentId));
      await ctx.cloudCtx.forget({ kind: 'port', id: 'port-1', name: 'web1' });
      seen.push(await ctx.recordedResources());
      throw new StepError(ErrorName.BackendUnreachable, 'The backend server is unreachable');
    });
    const outcome = await runStep(runner, { deploymentId, stepId: 'a', taskToken: 'sandbox-a', taskArn: 'x' });
    expect(outcome).toMatchObject({ ok: false, error: ErrorName.BackendUnreachable });
    expect(seen).toEqual([
      [
        { kind: 'network', id: 'net-1', name: 'private' },
        { kind: 'port', id: 'port-1', name: 'web1' },
      ],
      [{ kind: 'network', id: 'net-1', name: 'private' }],
    ]);
    expect(await deps.store.listCloudResources(deploymentId)).toEqual([{ kind: 'network', id: 'net-1', name: 'private' }]);
  });

  it('does not start a step cancelled between its read and its claim', async () => {
    let runs = 0;
    const { deps, deploymentId, runner } = await setup(async () => {
      runs++;
    });
    // The user's cancel lands just after the runner read the step as running.
    const racing: RunnerDeps = {
      ...runner,
      store: Object.assign(Object.create(deps.store) as typeof deps.store, {
        getStep: async (id: string, stepId: string) => {
          const step = await deps.store.getStep(id, stepId);
          await cancelDeployment(deps, 't1', deploymentId);
          return step;
        },
      }),
    };
    const outcome = await runStep(racing, { deploymentId, stepId: 'a', taskToken: 'sandbox-a', taskArn: 'task/a' });
    expect(outcome).toMatchObject({ ok: false, error: ErrorName.Cancelled });
    expect(runs).toBe(0);
    expect(await deps.store.getStep(deploymentId, 'a')).toMatchObject({ status: 'cancelled', attempt: 0 });
  });

  it('reads no secret and no file before a pre-started step is released, then both in one round trip', async () => {
    const deps = { ...memoryDeps(), prestart: { maxWaiting: 2 } };
    const chainBody = { ...body, workflow: { steps: [body.workflow.steps[0]!, { ...body.workflow.steps[1]!, dependsOn: ['a'] }] } };
    const deploymentId = await prestartedChain(deps, chainBody);
    const reads: { name: string; status?: string; othersInFlight: number }[] = [];
    let inFlight = 0;
    const watched = <T>(name: string, read: () => Promise<T>) => async () => {
      reads.push({ name, status: (await deps.store.getStep(deploymentId, 'b'))?.status, othersInFlight: inFlight });
      inFlight++;
      try {
        await new Promise((resolve) => setTimeout(resolve, 5));
        return await read();
      } finally {
        inFlight--;
      }
    };
    const store = Object.assign(Object.create(deps.store) as typeof deps.store, {
      getSecrets: (id: string) => watched('secrets', () => deps.store.getSecrets(id))(),
      getFiles: (id: string) => watched('files', () => deps.store.getFiles(id))(),
    });
    let token: string | undefined;
    const runner = runnerDepsOf(deps, {
      store,
      releasePollMs: { first: 2, max: 5 },
      actions: { run: async (ctx) => void (token = ctx.token) },
    });
    const running = runStep(runner, { deploymentId, stepId: 'b', taskToken: 'sandbox-b', taskArn: 'task/b' });
    for (let i = 0; i < 200 && !(await deps.store.getStep(deploymentId, 'b'))?.readyAt; i++) await new Promise((resolve) => setTimeout(resolve, 2));
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(reads).toEqual([]);
    await recordStepResult(deps, { deploymentId, stepId: 'a' });
    expect(await running).toEqual({ ok: true, output: {} });
    expect(token).toBe('tok-t1-secret-value');
    expect(reads.map((r) => [r.name, r.status])).toEqual([['secrets', 'running'], ['files', 'running']]);
    // The second read started while the first was still on its way.
    expect(reads[1]?.othersInFlight).toBe(1);
  });

  it('sees its release at most 0.5 s late, however long it has waited (docs/ARCHITECTURE.md, "Why polling")', async () => {
    vi.useFakeTimers();
    try {
      const deps = { ...memoryDeps(), prestart: { maxWaiting: 2 } };
      const chainBody = { ...body, workflow: { steps: [body.workflow.steps[0]!, { ...body.workflow.steps[1]!, dependsOn: ['a'] }] } };
      const deploymentId = await prestartedChain(deps, chainBody);
      const reads: number[] = [];
      const store = Object.assign(Object.create(deps.store) as typeof deps.store, {
        getStep: (id: string, stepId: string) => {
          if (stepId === 'b') reads.push(Date.now());
          return deps.store.getStep(id, stepId);
        },
      });
      // The runner's own poll (no releasePollMs given), heartbeats left at their real 20 s.
      const running = runStep({ ...runnerDepsOf(deps, { store, actions: { run: async () => undefined } }), heartbeatMs: 20_000 }, { deploymentId, stepId: 'b', taskToken: 'sandbox-b', taskArn: 'task/b' });
      await vi.advanceTimersByTimeAsync(60_000);
      expect((await deps.store.getStep(deploymentId, 'b'))?.status).toBe('waiting');
      const gaps = reads.slice(1).map((at, i) => at - reads[i]!);
      expect(gaps.length).toBeGreaterThan(100);
      expect(Math.max(...gaps)).toBeLessThanOrEqual(500);
      await recordStepResult(deps, { deploymentId, stepId: 'a' });
      await vi.advanceTimersByTimeAsync(500);
      expect(await running).toEqual({ ok: true, output: {} });
    } finally {
      vi.useRealTimers();
    }
  });

  it('sends its first heartbeat before its reads and claim answer, having read no secret', async () => {
    let ran = false;
    const { deps, deploymentId, runner } = await setup(async () => {
      ran = true;
    });
    // The store answers only when let go: the heartbeat must not wait for it.
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => (letGo = resolve));
    const secretReads: string[] = [];
    const store = Object.assign(Object.create(deps.store) as typeof deps.store, {
      getStep: async (id: string, stepId: string) => (await held, deps.store.getStep(id, stepId)),
      getSecrets: (id: string) => (secretReads.push(id), deps.store.getSecrets(id)),
    });
    const beats: string[] = [];
    const executions = Object.assign(Object.create(deps.executions) as typeof deps.executions, {
      sendTaskHeartbeat: async (token: string) => void beats.push(token),
    });
    const running = runStep({ ...runner, store, executions, heartbeatMs: 60_000 }, { deploymentId, stepId: 'a', taskToken: 'sandbox-a', taskArn: 'task/a' });
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(beats).toEqual(['sandbox-a']);
    expect(secretReads).toEqual([]);
    expect(ran).toBe(false);
    letGo();
    expect(await running).toEqual({ ok: true, output: {} });
    expect(ran).toBe(true);
  });

  it('stops heartbeating a step it refuses to start', async () => {
    const { deps, deploymentId, runner } = await setup(async () => undefined);
    await recordStepFailure(deps, { deploymentId, stepId: 'a', error: { Error: ErrorName.StepFailed } });
    await awaitDependencies(deps, { deploymentId, stepId: 'b', taskToken: 'await-b' });
    let beats = 0;
    const executions = Object.assign(Object.create(deps.executions) as typeof deps.executions, {
      sendTaskHeartbeat: async () => void beats++,
    });
    const outcome = await runStep({ ...runner, executions, heartbeatMs: 2 }, { deploymentId, stepId: 'b', taskToken: 'sandbox-b', taskArn: 'x' });
    expect(outcome).toMatchObject({ ok: true, output: { skipped: expect.any(String) } });
    const after = beats;
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(beats).toBe(after);
  });

  it('gives two sandboxes started at the same moment an attempt each, so their log lines stay apart', async () => {
    const { deploymentId, runner } = await setup(async () => undefined);
    await Promise.all([
      runStep(runner, { deploymentId, stepId: 'a', taskToken: 'sandbox-a1', taskArn: 'task/a1' }),
      runStep(runner, { deploymentId, stepId: 'a', taskToken: 'sandbox-a2', taskArn: 'task/a2' }),
    ]);
    // Both read attempt 0; the second claim is refused on the attempt, read again, and takes attempt 2.
    const started = (await runner.store.getLogs(deploymentId, { stepId: 'a' })).filter((l) => l.text.includes('started'));
    expect(started.map((l) => l.attempt).sort()).toEqual([1, 2]);
    expect((await runner.store.getStep(deploymentId, 'a'))?.attempt).toBe(2);
  });
});
