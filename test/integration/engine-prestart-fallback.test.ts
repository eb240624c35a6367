import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../core/api.ts';
import { processAlive, runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * Pre-start is an optimisation only (issue 12): when Fargate cannot start a step's sandbox ahead of its
 * release (RunTask answers `failures`, e.g. no capacity), the step waits for its release and starts a
 * sandbox then, instead of failing the deployment. Local ECS refuses the RunTasks as AWS does; the steps
 * call a gate the test opens, so nothing depends on speed (the time scale shrinks the ECS retry backoff).
 */

/** A test waits through up to two rounds of ECS retries (time-scaled backoff) plus sandbox starts on a loaded machine. */
const TEST_TIMEOUT_MS = 150_000;

const NO_CAPACITY = 'Capacity is unavailable at this time. Please try again later or in a different availability zone';

/** RunStepInSandbox's attempts at a RunTask ECS keeps refusing: the first plus its ECS-fault retries, from the ASL. */
const RUN_TASK_ATTEMPTS = (() => {
  const asl = readFileSync(new URL('../../statemachine/deployment.asl.json', import.meta.url), 'utf8');
  const found = /"RunStepInSandbox"[\s\S]*?"ECS\.ThrottlingException"[\s\S]*?"MaxAttempts": (\d+)/.exec(asl);
  return 1 + Number(found![1]);
})();

let t: TestEngine;
let gate: { server: Server; url: string; calls: string[]; open(name: string, answer: string): void };

beforeAll(async () => {
  const held = new Map<string, (answer: string) => void>();
  const opened = new Map<string, string>();
  const calls: string[] = [];
  const server = createServer((req, res) => {
    const name = decodeURIComponent(req.url?.slice(1) ?? '');
    calls.push(name);
    const ready = opened.get(name);
    if (ready !== undefined) res.end(ready);
    else held.set(name, (answer) => res.end(answer));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  gate = {
    server,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    open: (name, answer) => {
      opened.set(name, answer);
      held.get(name)?.(answer);
      held.delete(name);
    },
  };
  t = await startTestEngine({ timeScale: 0.1, prestart: { maxWaiting: 4 } });
});
afterAll(async () => {
  await t?.stop();
  gate?.server.close();
});

/** A step whose user code calls the gate and succeeds only when the answer is "ok". */
const call = (name: string) => `${process.execPath} -e 'fetch("${gate.url}/${name}").then((r) => r.text()).then((a) => process.exit(a === "ok" ? 0 : 1))'`;
const step = (view: DeploymentView, id: string) => view.steps.find((s) => s.stepId === id)!;
/** Until b's failed pre-start is recorded, or the deployment ended without it (then the assertions after say why). */
const fellBack = (b: string) => (d: DeploymentView) => step(d, b).prestartFailure !== undefined || ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(d.status);
const runTasksOf = (stepId: string) => t.engine.sandboxes.runTasks.filter((r) => r.stepId === stepId);

/** a → b, with a held in its user code: b's RunTasks (ahead of the release) are refused meanwhile. */
async function chainWithRefusedPrestart(a: string, b: string): Promise<string> {
  t.engine.sandboxes.refuseRunTasks(b, NO_CAPACITY);
  const { deploymentId } = await t.client.submit(
    runDeployment([
      { id: a, command: call(a) },
      { id: b, command: call(b), dependsOn: [a] },
    ]),
  );
  await t.waitFor(deploymentId, () => gate.calls.includes(a) && runTasksOf(b).length > 0);
  return deploymentId;
}

describe('a pre-started sandbox that ECS cannot start', () => {
  it('falls back to a sandbox started at the release: the deployment succeeds, b runs once, and the user sees the failed pre-start', async () => {
    const deploymentId = await chainWithRefusedPrestart('a1', 'b1');
    // Every try ahead of the release refused, and the step waits (not failed) for its release.
    const waiting = await t.waitFor(deploymentId, fellBack('b1'));
    expect(step(waiting, 'b1').status, t.logTail()).toBe('waiting');
    expect(step(waiting, 'b1').prestartFailure).toContain(NO_CAPACITY);
    expect(runTasksOf('b1')).toHaveLength(RUN_TASK_ATTEMPTS);
    expect(runTasksOf('b1').every((r) => r.prestart && r.refused === NO_CAPACITY)).toBe(true);

    // Capacity is back; a ends and releases b.
    t.engine.sandboxes.refuseRunTasks('b1', undefined);
    gate.open('a1', 'ok');
    await t.waitFor(deploymentId, () => gate.calls.includes('b1'));
    gate.open('b1', 'ok');
    const end = await t.waitForEnd(deploymentId);
    expect(end.status, t.logTail()).toBe('SUCCEEDED');

    const b = step(end, 'b1');
    expect(b).toMatchObject({ status: 'succeeded', attempt: 1 });
    expect(b.error).toBeUndefined();
    expect(b.prestartFailure).toContain(NO_CAPACITY);
    // No sandbox ever waited for b's release: it got one sandbox, started the normal way after its release.
    expect(b.readyAt).toBeUndefined();
    const started = runTasksOf('b1').filter((r) => !r.refused);
    expect(started).toHaveLength(1);
    expect(started[0]!.prestart).toBe(false);
    expect(started[0]!.at).toBeGreaterThanOrEqual(Date.parse(b.startedAt!));
    expect(gate.calls.filter((c) => c === 'b1')).toHaveLength(1);
    // The step's log says what happened, before its attempt's own lines.
    const { lines } = await t.client.logs(deploymentId, { step: 'b1' });
    expect(lines[0]?.text).toMatch(/sandbox started ahead of the release could not start \(AmazonECS\.Unknown: .*Capacity is unavailable/);
  }, TEST_TIMEOUT_MS);

  it('fails the step as before when its RunTask is refused at the release too', async () => {
    const deploymentId = await chainWithRefusedPrestart('a2', 'b2');
    await t.waitFor(deploymentId, fellBack('b2'));
    gate.open('a2', 'ok');
    const end = await t.waitForEnd(deploymentId);
    expect(end.status).toBe('FAILED');
    expect(step(end, 'a2').status).toBe('succeeded');
    // The error table's own outcome for ECS faults: retried, then the step fails with ECS's error.
    expect(step(end, 'b2')).toMatchObject({ status: 'failed', error: 'AmazonECS.Unknown' });
    expect(step(end, 'b2').cause).toContain(NO_CAPACITY);
    expect(end.error).toBe('AmazonECS.Unknown');
    // As many tries after the release as before it: the fallback added one full start, not an endless loop.
    expect(runTasksOf('b2').filter((r) => r.prestart)).toHaveLength(RUN_TASK_ATTEMPTS);
    expect(runTasksOf('b2').filter((r) => !r.prestart)).toHaveLength(RUN_TASK_ATTEMPTS);
    expect(gate.calls).not.toContain('b2');
    t.engine.sandboxes.refuseRunTasks('b2', undefined);
  }, TEST_TIMEOUT_MS);

  it.each([
    ['right after its first refused RunTask', 'a3', 'b3', false],
    ['once it waits for its release', 'a4', 'b4', true],
  ])('ends skipped when its dependency fails %s, and leaves nothing running', async (_, a, b, afterFallback) => {
    const deploymentId = await chainWithRefusedPrestart(a, b);
    if (afterFallback) await t.waitFor(deploymentId, fellBack(b));
    gate.open(a, 'fail');
    const end = await t.waitForEnd(deploymentId);
    expect(end.status).toBe('FAILED');
    expect(step(end, a).status).toBe('failed');
    expect(step(end, b).status).toBe('skipped');
    // The deployment's error is a's, not ECS's.
    expect(end.error).not.toBe('AmazonECS.Unknown');
    expect(gate.calls).not.toContain(b);
    // No sandbox of b ever ran, none is left, and no RunTask for b came after the skip was answered.
    expect(runTasksOf(b).every((r) => r.prestart && r.refused)).toBe(true);
    expect(runTasksOf(b).length).toBeLessThanOrEqual(RUN_TASK_ATTEMPTS);
    expect(t.engine.sandboxes.taskArns().has(b)).toBe(false);
    expect([...t.engine.sandboxes.processGroups().keys()].filter((id) => id === a || id === b)).toEqual([]);
    t.engine.sandboxes.refuseRunTasks(b, undefined);
  }, TEST_TIMEOUT_MS);
});

/**
 * A pre-started sandbox lost while it waits for its release (Fargate stops it for a Spot interruption or a
 * retirement, the runner crashes, or its task fails to start after RunTask accepted it) ran nothing of the
 * user's: the step falls back to a sandbox started at its release, as when ECS refuses the RunTask, instead
 * of failing (a running step's lost sandbox is retried once, then fails: test/integration/engine-sandbox-lost.test.ts).
 */
describe('a pre-started sandbox lost before its release', () => {
  /** a → b with a held: b's sandbox is up and registered on its waiting step. */
  async function chainWithWaitingSandbox(a: string, b: string): Promise<string> {
    const { deploymentId } = await t.client.submit(
      runDeployment([
        { id: a, command: call(a) },
        { id: b, command: call(b), dependsOn: [a] },
      ]),
    );
    await t.waitFor(deploymentId, (d) => (gate.calls.includes(a) && step(d, b).readyAt !== undefined) || ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(d.status));
    return deploymentId;
  }

  /** a ends; b runs once in a fresh sandbox started at its release, and the deployment succeeds. */
  async function releasedIntoFreshSandbox(deploymentId: string, a: string, b: string): Promise<DeploymentView> {
    gate.open(a, 'ok');
    await t.waitFor(deploymentId, () => gate.calls.includes(b));
    gate.open(b, 'ok');
    const end = await t.waitForEnd(deploymentId);
    expect(end.status, t.logTail()).toBe('SUCCEEDED');
    const done = step(end, b);
    expect(done).toMatchObject({ status: 'succeeded' });
    expect(done.error).toBeUndefined();
    // The lost sandbox's readiness went with it; the fresh one was started after the release, the normal way.
    expect(done.readyAt).toBeUndefined();
    const [ahead, fresh, ...more] = runTasksOf(b);
    expect(more).toEqual([]);
    expect(ahead!.prestart).toBe(true);
    expect(fresh!.prestart).toBe(false);
    expect(fresh!.at).toBeGreaterThanOrEqual(Date.parse(done.startedAt!));
    expect(gate.calls.filter((c) => c === b)).toHaveLength(1);
    return end;
  }

  it.each([
    // On Fargate SIGTERM reaches the runner alone, which reports it; locally bwrap dies of it too, and its STOPPED event may come first.
    ['stopped by ECS (SIGTERM): the runner or its STOPPED event reports it', 'SIGTERM', 'a5', 'b5', /stopped while it waited|killed by SIGTERM/],
    ['killed (SIGKILL): the STOPPED event reports it', 'SIGKILL', 'a6', 'b6', /killed by SIGKILL; exit code 137/],
  ] as const)('%s; the step starts a fresh sandbox at its release', async (_, signal, a, b, reason) => {
    const deploymentId = await chainWithWaitingSandbox(a, b);
    const waiting = await t.client.get(deploymentId);
    expect(step(waiting, b).status, t.logTail()).toBe('waiting');
    const group = t.engine.sandboxes.processGroups().get(b);
    expect(group, 'b has a sandbox').toBeGreaterThan(0);
    process.kill(-group!, signal);

    const fallen = await t.waitFor(deploymentId, fellBack(b));
    expect(step(fallen, b).status, t.logTail()).toBe('waiting');
    expect(step(fallen, b).prestartFailure).toMatch(reason);
    const end = await releasedIntoFreshSandbox(deploymentId, a, b);
    // The lost sandbox ran nothing of the step: no attempt (its registration was taken back), so the fresh one's is the first.
    expect(step(end, b).attempt).toBe(1);
    const { lines } = await t.client.logs(deploymentId, { step: b });
    expect(lines.map((l) => l.text).join('\n')).toMatch(/the sandbox started ahead of the release was (lost|stopped).*; starting one at the release instead/);
  }, TEST_TIMEOUT_MS);

  it('whose task failed to start after ECS accepted it (TaskFailedToStart): the step starts a fresh sandbox at its release', async () => {
    const pullError = 'CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref';
    t.engine.sandboxes.failStarts('b7', pullError);
    const { deploymentId } = await t.client.submit(
      runDeployment([
        { id: 'a7', command: call('a7') },
        { id: 'b7', command: call('b7'), dependsOn: ['a7'] },
      ]),
    );
    const fallen = await t.waitFor(deploymentId, fellBack('b7'));
    expect(step(fallen, 'b7').status, t.logTail()).toBe('waiting');
    expect(step(fallen, 'b7').prestartFailure).toContain(`${pullError} (TaskFailedToStart)`);
    t.engine.sandboxes.failStarts('b7', undefined);
    const end = await releasedIntoFreshSandbox(deploymentId, 'a7', 'b7');
    expect(step(end, 'b7').attempt).toBe(1);
  }, TEST_TIMEOUT_MS);
});

/**
 * A pre-started sandbox waits at most its idle limit (PrestartPolicy.maxIdleSeconds) once up: past it, it gives
 * its place back and stops, and the step starts a fresh sandbox at its release, so no step's idle sandbox costs
 * more than the limit however long its dependencies run. An engine of its own with a limit of 2 s (on the engine's clock).
 */
describe('a pre-started sandbox past its idle limit', () => {
  let idle: TestEngine;
  beforeAll(async () => {
    idle = await startTestEngine({ timeScale: 0.1, prestart: { maxWaiting: 4, maxIdleSeconds: 2 } });
  });
  afterAll(async () => {
    await idle?.stop();
  });

  it('stops while its dependency still runs, and the step runs once in a fresh sandbox at its release; the wait counts as idle', async () => {
    const { deploymentId } = await idle.client.submit(
      runDeployment([
        { id: 'a8', command: call('a8') },
        { id: 'b8', command: call('b8'), dependsOn: ['a8'] },
      ]),
    );
    // Up and waiting (its group is read now, while it lives), or already given up if this poll came late.
    let group: number | undefined;
    const up = await idle.waitFor(deploymentId, (d) => {
      group ??= idle.engine.sandboxes.processGroups().get('b8');
      return step(d, 'b8').readyAt !== undefined || fellBack('b8')(d);
    });
    expect(step(up, 'b8').status, idle.logTail()).toBe('waiting');
    expect(group, 'b8 had a sandbox').toBeGreaterThan(0);

    const gaveUp = await idle.waitFor(deploymentId, fellBack('b8'));
    expect(step(gaveUp, 'b8').status, idle.logTail()).toBe('waiting');
    expect(step(gaveUp, 'b8').prestartFailure).toBe('the sandbox started ahead of the release waited 2 s for it, the most a sandbox may wait');
    expect(step(gaveUp, 'b8').readyAt).toBeUndefined();
    // a is still held: the idle sandbox's processes are gone before its step's release, not at it.
    expect(gate.calls).not.toContain('b8');
    await idle.waitFor(deploymentId, () => !idle.engine.sandboxes.processGroups().has('b8'));
    expect(processAlive(group!)).toBe(false);
    // Its 2 s of waiting stay on the step, and in the deployment's idle figure.
    expect(step(gaveUp, 'b8').prestartIdleSeconds).toBeGreaterThanOrEqual(2);

    gate.open('a8', 'ok');
    await idle.waitFor(deploymentId, () => gate.calls.includes('b8'));
    gate.open('b8', 'ok');
    const end = await idle.waitForEnd(deploymentId);
    expect(end.status, idle.logTail()).toBe('SUCCEEDED');
    expect(step(end, 'b8')).toMatchObject({ status: 'succeeded', attempt: 1 });
    const [ahead, fresh, ...more] = idle.engine.sandboxes.runTasks.filter((r) => r.stepId === 'b8');
    expect(more).toEqual([]);
    expect([ahead!.prestart, fresh!.prestart]).toEqual([true, false]);
    expect(fresh!.at).toBeGreaterThanOrEqual(Date.parse(step(end, 'b8').startedAt!));
    expect(gate.calls.filter((c) => c === 'b8')).toHaveLength(1);
    // The idle figure is every wait once: the sandboxes that served their step (a8's, started ahead of bastion-open's
    // end), up to their release, plus b8's given-up one. The fresh b8 sandbox was started at the release: no wait.
    const served = end.steps.reduce((sum, s) => sum + (s.readyAt && s.startedAt ? Date.parse(s.startedAt) - Date.parse(s.readyAt) : 0), 0) / 1000;
    expect(step(end, 'b8').readyAt).toBeUndefined();
    expect(end.idleSandboxSeconds).toBeCloseTo(served + step(end, 'b8').prestartIdleSeconds!, 1);
  }, TEST_TIMEOUT_MS);
});
