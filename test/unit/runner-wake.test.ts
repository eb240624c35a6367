import { PassThrough } from 'node:stream';
import { describe, expect, it, vi } from 'vitest';
import { PRESTART_LOST } from '../../core/errors.ts';
import { idleSandboxSeconds } from '../../core/usecases/release.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { awaitDependencies, recordStepResult } from '../../core/usecases/workflow.ts';
import { runStep, type RunnerDeps } from '../../sandbox/runner.ts';
import { readTask } from '../../sandbox/stdinTask.ts';
import { Wakes } from '../../sandbox/wakes.ts';
import { bastionOpened, memoryDeps, prestartedChain, runnerDepsOf } from '../helpers/memoryEngine.ts';

/**
 * A pre-started runner woken at its release (issue 12): the engine's release wakes the sandbox, the wake
 * ends the runner's poll sleep, and it reads its step. The poll here is an hour: without the wake the
 * release is never seen and the test times out.
 */

const HOUR = 3_600_000;
const chain = {
  name: 'demo',
  bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
  workflow: { steps: [{ id: 'a', action: 'run', command: 'true' }, { id: 'b', action: 'run', command: 'true', dependsOn: ['a'] }] },
};

const tick = () => new Promise((resolve) => setTimeout(resolve, 10));

/** b is waiting with no sandbox registered (none did, or its registration was taken back): a fresh one starts at its release. */
async function expectNotRegistered(deps: ReturnType<typeof memoryDeps>, deploymentId: string) {
  const after = await deps.store.getStep(deploymentId, 'b');
  expect(after).toMatchObject({ status: 'waiting', attempt: 0 });
  expect([after?.taskToken, after?.taskArn, after?.readyAt]).toEqual([undefined, undefined, undefined]);
  return after;
}

async function waitingRunner(opts: { wakes?: boolean; releasePollMs?: { first: number; max: number } } = {}) {
  const deps = { ...memoryDeps(), prestart: { maxWaiting: 2 } };
  const deploymentId = await prestartedChain(deps, chain);
  const reads: string[] = [];
  const store = Object.assign(Object.create(deps.store) as typeof deps.store, {
    getStep: async (id: string, stepId: string) => {
      const step = await deps.store.getStep(id, stepId);
      if (stepId === 'b') reads.push(step?.status ?? 'gone');
      return step;
    },
  });
  const wakes = new Wakes();
  const stop = new AbortController();
  let ran = 0;
  const running = runStep(
    runnerDepsOf(deps, {
      store,
      heartbeatMs: HOUR,
      releasePollMs: opts.releasePollMs ?? { first: HOUR, max: HOUR },
      ...(opts.wakes === false ? {} : { wakes }),
      actions: { run: async () => void ran++ },
      signal: stop.signal,
    }),
    { deploymentId, stepId: 'b', taskToken: 'sandbox-b', taskArn: 'task/b' },
  );
  // Registered, and its first poll read seen the step waiting: it now sleeps for an hour.
  while (!reads.includes('waiting')) await tick();
  return { deps, deploymentId, reads, wakes, running, stop, ran: () => ran };
}

describe('a pre-started runner woken at its release', () => {
  it("is woken by the engine's release and runs at once, though its poll sleeps for an hour", async () => {
    const { deps, deploymentId, wakes, running, ran } = await waitingRunner();
    deps.sandboxes.onWake = (taskArn) => taskArn === 'task/b' && wakes.wake();
    await recordStepResult(deps, { deploymentId, stepId: 'a' });
    expect(deps.sandboxes.woken).toEqual(['task/b']);
    expect(await running).toEqual({ ok: true, output: {} });
    expect(ran()).toBe(1);
  });

  it('reads its step once on a stray wake before the release, and keeps waiting', async () => {
    const { deps, deploymentId, reads, wakes, running, ran } = await waitingRunner();
    const before = reads.length;
    wakes.wake();
    while (reads.length === before) await tick();
    // A few more turns of the event loop: nothing else follows the one read.
    for (let i = 0; i < 5; i++) await tick();
    expect(reads.slice(before)).toEqual(['waiting']);
    expect(ran()).toBe(0);
    expect(deps.executions.answers.has('sandbox-b')).toBe(false);
    // The release still gets through (woken again, as the engine would).
    deps.sandboxes.onWake = () => wakes.wake();
    await recordStepResult(deps, { deploymentId, stepId: 'a' });
    expect(await running).toEqual({ ok: true, output: {} });
    expect(reads.at(-1)).toBe('running');
  });

  it('does not wake a sandbox that has not registered: its poll sees the release', async () => {
    const deps = { ...memoryDeps(), prestart: { maxWaiting: 2 } };
    const { deploymentId } = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1-secret-value', body: chain });
    await bastionOpened(deps, deploymentId);
    await awaitDependencies(deps, { deploymentId, stepId: 'a', taskToken: 'await-a' });
    await awaitDependencies(deps, { deploymentId, stepId: 'b', taskToken: 'await-b' });
    expect((await deps.store.getStep(deploymentId, 'b'))?.prestartedAt).toBeDefined();
    await recordStepResult(deps, { deploymentId, stepId: 'a' });
    expect((await deps.store.getStep(deploymentId, 'b'))?.status).toBe('running');
    expect(deps.sandboxes.woken).toEqual([]);
  });
});

describe('a pre-started runner once pre-start halted (ECS refused another sandbox started ahead)', () => {
  it('gives its place back when woken to the mark, having run and decrypted nothing, so the step starts a fresh sandbox at its release', async () => {
    const { deps, deploymentId, wakes, running, ran } = await waitingRunner();
    const decrypted = vi.spyOn(deps.vault, 'decrypt');
    await deps.store.updateStep(deploymentId, 'b', { prestartHaltedAt: new Date(deps.clock.now()).toISOString() }, { ifStatus: ['waiting'] });
    wakes.wake();
    const outcome = await running;
    expect(outcome).toMatchObject({ ok: false, error: PRESTART_LOST, cause: expect.stringMatching(/gave its place back: ECS refused a sandbox of this deployment/) });
    expect(deps.executions.answers.get('sandbox-b')).toMatchObject({ ok: false, error: PRESTART_LOST });
    expect(ran()).toBe(0);
    expect(decrypted).not.toHaveBeenCalled();
    await expectNotRegistered(deps, deploymentId);
  });

  it('does not register at all when it comes up after the halt', async () => {
    const deps = { ...memoryDeps(), prestart: { maxWaiting: 2 } };
    const deploymentId = await prestartedChain(deps, chain);
    await deps.store.updateDeployment(deploymentId, { prestartHalted: 'ECS refused the RunTask of step c' });
    let ran = 0;
    const outcome = await runStep(runnerDepsOf(deps, { heartbeatMs: HOUR, actions: { run: async () => void ran++ } }), { deploymentId, stepId: 'b', taskToken: 'sandbox-b', taskArn: 'task/b' });
    expect(outcome).toMatchObject({ ok: false, error: PRESTART_LOST, cause: expect.stringMatching(/did not wait for it: ECS refused/) });
    expect(ran).toBe(0);
    await expectNotRegistered(deps, deploymentId);
  });
});

describe('a pre-started runner stopped while it waits (ECS: Spot, a retirement, an operator)', () => {
  it('runs nothing, takes its registration back and reports the pre-start lost, so the step starts a fresh sandbox at its release', async () => {
    const { deps, deploymentId, running, stop, ran } = await waitingRunner();
    const registered = await deps.store.getStep(deploymentId, 'b');
    expect(registered).toMatchObject({ status: 'waiting', attempt: 1, taskArn: 'task/b' });
    stop.abort();
    expect(await running).toMatchObject({ ok: false, error: PRESTART_LOST });
    expect(ran()).toBe(0);
    // The answer the state machine routes to AwaitRelease (not Ctd.StepFailed, which would fail the step).
    expect(deps.executions.answers.get('sandbox-b')).toMatchObject({ ok: false, error: PRESTART_LOST });
    await expectNotRegistered(deps, deploymentId);
  });
});

describe('a pre-started runner past its idle limit', () => {
  /** b's runner, up on its waiting step with a limit of 0.3 s on a real clock; its poll would sleep for an hour. */
  async function idleRunner(store?: (deps: ReturnType<typeof memoryDeps>, deploymentId: string) => RunnerDeps['store'], releasePollMs = { first: HOUR, max: HOUR }) {
    const deps = { ...memoryDeps(), prestart: { maxWaiting: 2 } };
    const deploymentId = await prestartedChain(deps, chain);
    const decrypted = vi.spyOn(deps.vault, 'decrypt');
    let ran = 0;
    const running = runStep(
      runnerDepsOf(deps, {
        ...(store ? { store: store(deps, deploymentId) } : {}),
        clock: { now: () => Date.now() },
        heartbeatMs: HOUR,
        releasePollMs,
        maxIdleSeconds: 0.3,
        actions: { run: async () => void ran++ },
      }),
      { deploymentId, stepId: 'b', taskToken: 'sandbox-b', taskArn: 'task/b' },
    );
    return { deps, deploymentId, running, decrypted, ran: () => ran };
  }

  it('gives its registration back and reports the pre-start lost, having run and decrypted nothing; its wait stays in the idle figure', async () => {
    const { deps, deploymentId, running, decrypted, ran } = await idleRunner();
    const outcome = await running;
    expect(outcome).toEqual({ ok: false, error: PRESTART_LOST, cause: 'the sandbox started ahead of the release waited 0.3 s for it, the most a sandbox may wait' });
    // The answer the state machine routes to AwaitRelease: the step starts a fresh sandbox at its release.
    expect(deps.executions.answers.get('sandbox-b')).toMatchObject({ ok: false, error: PRESTART_LOST });
    expect(ran()).toBe(0);
    expect(decrypted).not.toHaveBeenCalled();
    const after = await expectNotRegistered(deps, deploymentId);
    // It waited its limit: the poll's hour-long sleep was cut to it.
    expect(after?.prestartIdleSeconds).toBeGreaterThanOrEqual(0.3);
    expect(idleSandboxSeconds([after!], Date.now())).toBe(after?.prestartIdleSeconds);
  });

  it('runs the step after all when the release wins over its take-back', async () => {
    const { deps, deploymentId, running, ran, decrypted } = await idleRunner((deps, deploymentId) =>
      Object.assign(Object.create(deps.store) as typeof deps.store, {
        applyStepTransition: async (...args: Parameters<typeof deps.store.applyStepTransition>) => {
          // a ends between the runner's last read and its take-back: b is released first.
          if (args[2].name === 'prestart-lost') await recordStepResult(deps, { deploymentId, stepId: 'a' });
          return deps.store.applyStepTransition(...args);
        },
      }),
    );
    expect(await running).toEqual({ ok: true, output: {} });
    expect(ran()).toBe(1);
    expect(decrypted).toHaveBeenCalledTimes(1);
    // Nothing was taken back: the attempt is this sandbox's, and its wait counts once, up to the release.
    const b = await deps.store.getStep(deploymentId, 'b');
    expect(b).toMatchObject({ attempt: 1, readyAt: expect.any(String) });
    expect(b?.prestartIdleSeconds).toBeUndefined();
  });

  it('tries its take-back again when the store fails it, instead of answering with the registration still in place', async () => {
    let failures = 0;
    const { deps, deploymentId, running, ran } = await idleRunner((deps) =>
      Object.assign(Object.create(deps.store) as typeof deps.store, {
        applyStepTransition: async (...args: Parameters<typeof deps.store.applyStepTransition>) => {
          if (args[2].name === 'prestart-lost' && failures++ === 0) throw new Error('ProvisionedThroughputExceededException');
          return deps.store.applyStepTransition(...args);
        },
      }),
      // The retry comes after the poll's first delay.
      { first: 20, max: HOUR },
    );
    expect(await running).toMatchObject({ ok: false, error: PRESTART_LOST });
    expect(failures).toBe(2);
    expect(ran()).toBe(0);
    expect(await deps.store.getStep(deploymentId, 'b')).toMatchObject({ status: 'waiting', attempt: 0, prestartIdleSeconds: expect.any(Number) });
  });
});

describe("a woken runner's poll", () => {
  const settle = async (reads: string[], ms: number) => {
    // Reads stop coming for `ms` of real time (a loaded machine only makes timers late, never early).
    for (let seen = -1; seen !== reads.length; ) {
      seen = reads.length;
      await new Promise((resolve) => setTimeout(resolve, ms));
    }
  };

  it('reads at once and after `first` (a release no wake announced), then only every `max`', async () => {
    const { deps, deploymentId, reads, wakes, running } = await waitingRunner({ releasePollMs: { first: 30, max: HOUR } });
    await settle(reads, 400);
    // The claim's read, then the two polls; with the ×1.5 backoff it would read at 75, 143, 244, 396 ms… as well.
    expect(reads).toEqual(['waiting', 'waiting', 'waiting']);
    deps.sandboxes.onWake = () => wakes.wake();
    await recordStepResult(deps, { deploymentId, stepId: 'a' });
    expect(await running).toEqual({ ok: true, output: {} });
    expect(reads.at(-1)).toBe('running');
  });

  it('keeps its backoff where no wake can reach it (Fargate)', async () => {
    const { reads, running, stop } = await waitingRunner({ wakes: false, releasePollMs: { first: 30, max: HOUR } });
    // The claim's read, then polls at 0, 30, 75, 143, 244 ms: a poll that jumped to `max` would never get here.
    while (reads.length < 6) await tick();
    expect(reads.every((r) => r === 'waiting')).toBe(true);
    stop.abort();
    expect(await running).toMatchObject({ ok: false });
  });
});

describe("a local runner's stdin", () => {
  it('hands over the task on its first line; every further line is a wake, and its end changes nothing', async () => {
    const input = new PassThrough();
    const wakes = new Wakes();
    const woken = vi.spyOn(wakes, 'wake');
    const task = readTask(input, wakes);
    input.write('{"CTD_STEP_ID":"b","CTD_ATTEMPT":2}\nwa');
    expect(await task).toEqual({ CTD_STEP_ID: 'b', CTD_ATTEMPT: '2' });
    expect(woken).not.toHaveBeenCalled();
    input.write('ke\nwake\n');
    input.end('wake\n');
    await new Promise((resolve) => input.once('end', resolve));
    expect(woken).toHaveBeenCalledTimes(3);
  });

  it('ends without a task when stdin closes first, and names a task that is not an object', async () => {
    const empty = new PassThrough();
    const none = readTask(empty, new Wakes());
    empty.end();
    expect(await none).toBeUndefined();
    const bad = new PassThrough();
    const refused = readTask(bad, new Wakes());
    bad.write('["not", "a", "task"]\n');
    await expect(refused).rejects.toThrow('the task on stdin is not an object');
  });
});
