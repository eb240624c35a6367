import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../core/api.ts';
import { runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';
import { gateCall, startGate, type Gate } from '../helpers/gate.ts';

/**
 * Pre-start by time (issue 12), through the local engine: the first run of a chain pre-starts every
 * sandbox at once; the second run of the same deployment knows its steps took seconds against a
 * sub-second start, and starts each sandbox only once the step before it runs. Seen through the API.
 */

let t: TestEngine;
let gate: Gate;
beforeAll(async () => {
  gate = await startGate();
  // A simulated start of 0.5 s on the engine's clock: the steps' held seconds are many starts long.
  t = await startTestEngine({ timeScale: 0.1, sandboxStartLatency: { median: 5, p90: 5 }, prestart: { maxWaiting: 4, startSeconds: 0.5 } });
});
afterAll(async () => {
  await t?.stop();
  gate?.server.close();
});

const HELD_MS = 8_000;
const step = (view: DeploymentView, id: string) => view.steps.find((s) => s.stepId === id)!;
const chain = (run: string) =>
  runDeployment([
    { id: 's1', command: gateCall(gate, `s1-${run}`) },
    { id: 's2', command: gateCall(gate, `s2-${run}`), dependsOn: ['s1'] },
    { id: 's3', command: gateCall(gate, `s3-${run}`), dependsOn: ['s2'] },
  ]);

/** Opens a step's gate once its code has run for `heldMs` (a step that takes that long). */
async function hold(deploymentId: string, name: string, heldMs: number): Promise<void> {
  await t.waitFor(deploymentId, () => gate.calls.includes(name));
  await new Promise((resolve) => setTimeout(resolve, heldMs));
  gate.open(name, 'ok');
}

describe('pre-start by time', () => {
  it('starts the third sandbox of a slow chain at once the first time, and only once the second step runs the next time', async () => {
    const first = (await t.client.submit(chain('a'))).deploymentId;
    await hold(first, 's1-a', HELD_MS);
    await hold(first, 's2-a', HELD_MS);
    gate.open('s3-a', 'ok');
    const one = await t.waitForEnd(first);
    expect(one.status, t.logTail()).toBe('SUCCEEDED');
    // No earlier run: the cascade starts s3's sandbox while s1 still runs.
    expect(Date.parse(step(one, 's3').prestartedAt!)).toBeLessThan(Date.parse(step(one, 's2').startedAt!));

    const second = (await t.client.submit(chain('b'))).deploymentId;
    // s2 is the next level: its sandbox starts while s1 runs, as before.
    const during = await t.waitFor(second, (d) => gate.calls.includes('s1-b') && step(d, 's2').readyAt !== undefined);
    expect(step(during, 's3').prestartedAt).toBeUndefined();
    gate.open('s1-b', 'ok');
    gate.open('s2-b', 'ok');
    gate.open('s3-b', 'ok');
    const two = await t.waitForEnd(second);
    expect(two.status, t.logTail()).toBe('SUCCEEDED');
    // s3's release was two held steps away: its sandbox started with s2's run, not before.
    expect(Date.parse(step(two, 's3').prestartedAt!)).toBeGreaterThanOrEqual(Date.parse(step(two, 's2').startedAt!));
    expect(two.idleSandboxSeconds).toBeLessThan(one.idleSandboxSeconds!);
  });
});
