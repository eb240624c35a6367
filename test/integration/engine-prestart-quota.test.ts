import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../core/api.ts';
import { randomDag } from '../../bench/scheduling.ts';
import { VCPU_QUOTA_REACHED } from '../../local/sandbox/launcher.ts';
import { gateCall, startGate, type Gate } from '../helpers/gate.ts';
import { runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * Pre-start must never fail a deployment that would succeed without it (issue 12), even on an account whose
 * Fargate vCPU quota is small: sandboxes waiting for their release hold the quota too. Local ECS refuses a
 * RunTask beyond its quota as ECS does. Here the quota is 3 tasks and a → (b, c, d): the dependents' sandboxes
 * take the quota ahead of a, whose own RunTasks are refused, so without the halt a's RunTask is refused until
 * its retries run out, while b, c and d wait for a, and the deployment fails.
 */

const QUOTA = 3;
/** A Fargate task keeps its vCPU while it stops: here 20 s, time-scaled. */
const STOPPING_MS = 20_000;
/** What the tests' own refusals say, apart from the quota's. */
const NO_CAPACITY = 'Capacity is unavailable at this time. Please try again later or in a different availability zone';
/** Two rounds of ECS retries (time-scaled backoff) and sandbox starts on a loaded machine. */
const TEST_TIMEOUT_MS = 150_000;

let t: TestEngine;
let gate: Gate;
beforeAll(async () => {
  gate = await startGate();
  t = await startTestEngine({ timeScale: 0.1, prestart: { maxWaiting: 10 }, ecsTaskQuota: QUOTA, ecsTaskQuotaReleaseMs: STOPPING_MS });
});
afterAll(async () => {
  await t?.stop();
  gate?.server.close();
});

const step = (view: DeploymentView, id: string) => view.steps.find((s) => s.stepId === id)!;
const ended = (d: DeploymentView) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(d.status);

describe('pre-start on an account whose vCPU quota the waiting sandboxes fill', () => {
  it('halts once ECS refuses a sandbox for good, and every step runs once instead of the deployment failing', async () => {
    const dependents = ['b', 'c', 'd'];
    // a's first RunTasks are refused, so its dependents' sandboxes come up first and fill the quota.
    t.engine.sandboxes.refuseRunTasks('a', NO_CAPACITY);
    const { deploymentId } = await t.client.submit(
      runDeployment([{ id: 'a', command: gateCall(gate, 'a') }, ...dependents.map((id) => ({ id, command: 'true', dependsOn: ['a'] }))]),
    );
    // bastion-open is done and each dependent's sandbox is up, or could not start: from here the quota alone refuses a.
    await t.waitFor(deploymentId, (d) => ended(d) || (step(d, 'bastion-open').status === 'succeeded' && dependents.every((id) => step(d, id).readyAt !== undefined || step(d, id).prestartFailure !== undefined)));
    t.engine.sandboxes.refuseRunTasks('a', undefined);

    await t.waitFor(deploymentId, (d) => ended(d) || gate.calls.includes('a'));
    gate.open('a', 'ok');
    const end = await t.waitForEnd(deploymentId);
    expect(end.status, t.logTail()).toBe('SUCCEEDED');
    for (const id of ['a', ...dependents]) expect(step(end, id), id).toMatchObject({ status: 'succeeded', attempt: 1 });
    expect(gate.calls.filter((c) => c === 'a')).toHaveLength(1);

    // ECS refused sandboxes for the quota. Which refusal halted pre-start (a's, or a dependent's for the quota), and so
    // which sandboxes gave their places back, depends on timing; the user sees the halt and its cause.
    expect(t.engine.sandboxes.runTasks.some((r) => r.refused === VCPU_QUOTA_REACHED && r.stepId !== 'a')).toBe(true);
    expect(end.prestartHalted).toMatch(/^ECS refused a RunTask \(step [abcd]\): AmazonECS\.Unknown: .*(Capacity is unavailable|vCPUs)/);
    // Every task ends (bastion-close's runner exits just after it answered).
    const deadline = Date.now() + 10_000;
    while (t.engine.sandboxes.taskArns().size > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    expect([...t.engine.sandboxes.taskArns().keys()]).toEqual([]);
  }, TEST_TIMEOUT_MS);
});

describe('pre-start under a small vCPU quota, random workflows', () => {
  // Each round a DAG of short steps and a quota of 2–3 tasks: the sandboxes started ahead, bastion-open's and the
  // released steps' RunTasks race for the quota in whatever order the machine's timing gives. The DAGs are fixed
  // (CTD_TEST_SEED picks others): without the halt, seeds 11 and 12 failed like every seed tried.
  const seed = Number(process.env.CTD_TEST_SEED ?? 11);
  it(`succeeds as it would without pre-start, every step once (seed ${seed})`, async () => {
    for (let round = 0; round < 2; round++) {
      const quota = 2 + ((seed + round) % 2);
      const engine = await startTestEngine({ timeScale: 0.1, prestart: { maxWaiting: 10 }, ecsTaskQuota: quota, ecsTaskQuotaReleaseMs: STOPPING_MS });
      try {
        const dag = randomDag(seed + round, 8).map((s) => ({ id: s.id, command: `sleep ${(s.sleepSeconds / 4).toFixed(2)}`, dependsOn: s.dependsOn }));
        const { deploymentId } = await engine.client.submit(runDeployment(dag));
        const end = await engine.waitForEnd(deploymentId, 120_000);
        const context = `seed ${seed} round ${round}, quota ${quota}: ${JSON.stringify(end.steps.map((s) => [s.stepId, s.status, s.prestartFailure ?? '']))}`;
        expect(end.status, context).toBe('SUCCEEDED');
        for (const s of end.steps) expect(s, context).toMatchObject({ status: 'succeeded', attempt: 1 });
      } finally {
        await engine.stop();
      }
    }
  }, 2 * TEST_TIMEOUT_MS);
});

describe('a released step whose sandbox ECS refuses while a sandbox started ahead holds the last place', () => {
  it('makes room: the waiting sandbox gives its place back and the step starts again, instead of failing the deployment', async () => {
    // Quota 2, cap 1. b runs (held) and d's sandbox, started ahead behind s, waits: the quota is full when s is released.
    const engine = await startTestEngine({ timeScale: 0.1, prestart: { maxWaiting: 1 }, ecsTaskQuota: 2, ecsTaskQuotaReleaseMs: STOPPING_MS });
    try {
      // s's first RunTasks are refused whatever the quota, so d's sandbox is up before s's retries run out.
      engine.engine.sandboxes.refuseRunTasks('s', NO_CAPACITY);
      const { deploymentId } = await engine.client.submit(
        runDeployment([
          { id: 'a', command: 'true' },
          { id: 'b', command: gateCall(gate, 'b'), dependsOn: ['a'] },
          { id: 's', command: 'true', dependsOn: ['a'] },
          { id: 'd', command: 'true', dependsOn: ['s'] },
        ]),
      );
      // MakeRoom tells d's sandbox to give its place back; from here only the quota stands in s's way.
      const room = await engine.waitFor(deploymentId, (d) => ended(d) || step(d, 'd').prestartFailure !== undefined);
      expect(step(room, 'd').prestartFailure, engine.logTail()).toMatch(/gave its place back|did not wait for it/);
      expect(step(room, 's').prestartedAt).toBeUndefined();
      engine.engine.sandboxes.refuseRunTasks('s', undefined);

      await engine.waitFor(deploymentId, (d) => ended(d) || step(d, 'd').status === 'succeeded');
      gate.open('b', 'ok');
      const end = await engine.waitForEnd(deploymentId);
      expect(end.status, engine.logTail()).toBe('SUCCEEDED');
      for (const id of ['a', 'b', 's', 'd']) expect(step(end, id), id).toMatchObject({ status: 'succeeded', attempt: 1 });
      const runTasks = engine.engine.sandboxes.runTasks.filter((r) => r.stepId === 's');
      expect(runTasks.filter((r) => !r.refused)).toHaveLength(1);
      const { lines } = await engine.client.logs(deploymentId, { step: 's' });
      expect(lines.map((l) => l.text).join('\n')).toMatch(/ECS refused the step's sandbox \(AmazonECS\.Unknown: .*Capacity is unavailable.*\) while 1 started ahead for other steps held places/);
    } finally {
      await engine.stop();
    }
  }, TEST_TIMEOUT_MS);
});
