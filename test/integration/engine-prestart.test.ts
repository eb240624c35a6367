import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../core/api.ts';
import { groupAlive, runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';
import { gateCall, startGate, type Gate } from '../helpers/gate.ts';
import { peakWaiting } from '../../bench/coldstart.ts';

/**
 * Sandboxes started ahead of their step's release (issue 12), seen from outside: a gate server
 * the steps call over loopback (a call is the step's user code running), the local KMS's Decrypt
 * audit trail and the process table. The test opens the gates; nothing depends on speed.
 */

let t: TestEngine;
let gate: Gate;
beforeAll(async () => {
  gate = await startGate();
  // Time scale: heartbeats, polls and the grace period shrink; the test still waits on events only.
  t = await startTestEngine({ timeScale: 0.1, prestart: { maxWaiting: 4 } });
});
afterAll(async () => {
  await t?.stop();
  gate?.server.close();
});

/** A step whose user code calls the gate and succeeds only when the answer is "ok". */
const call = (name: string) => gateCall(gate, name);

const step = (view: DeploymentView, id: string) => view.steps.find((s) => s.stepId === id);
const decryptsOf = (deploymentId: string) => t.engine.kmsDecrypts.filter((d) => d.context.deploymentId === deploymentId);

describe('pre-started sandboxes', () => {
  it('boot while the dependency runs, but decrypt nothing and run no user code before the release', async () => {
    const { deploymentId } = await t.client.submit(
      runDeployment([
        { id: 'first', command: call('first-1') },
        { id: 'second', command: call('second-1'), dependsOn: ['first'] },
      ]),
    );
    // `first` is held in its user code; `second`'s sandbox is up and waiting (readyAt) meanwhile.
    const waiting = await t.waitFor(deploymentId, (d) => gate.calls.includes('first-1') && step(d, 'second')?.readyAt !== undefined);
    expect(step(waiting, 'second')?.status).toBe('waiting');
    const pgid = t.engine.sandboxes.processGroups().get('second');
    expect(pgid, 'the pre-started sandbox runs as its own task').toBeDefined();
    expect(groupAlive(pgid!)).toBe(true);
    expect(gate.calls).not.toContain('second-1');
    const observedAt = Date.now();
    const decryptsWhileWaiting = decryptsOf(deploymentId).length;
    // One each for the sandboxes released so far (bastion-open, first): none for the waiting one.
    expect(decryptsWhileWaiting).toBe(2);

    gate.open('first-1', 'ok');
    await t.waitFor(deploymentId, () => gate.calls.includes('second-1'));
    gate.open('second-1', 'ok');
    const end = await t.waitForEnd(deploymentId);
    expect(end.status, t.logTail()).toBe('SUCCEEDED');

    // And none later while it still waited: every decrypt for `second` came after its release.
    const second = step(end, 'second')!;
    const readyAt = Date.parse(second.readyAt!);
    const releasedAt = Date.parse(second.startedAt!);
    expect(readyAt).toBeLessThan(releasedAt);
    expect(decryptsOf(deploymentId).filter((d) => d.at >= observedAt && d.at < releasedAt)).toEqual([]);
    expect(decryptsOf(deploymentId).length).toBeGreaterThan(decryptsWhileWaiting);
    // Its user code ran after the release too.
    expect(gate.callTimes.get('second-1')).toBeGreaterThanOrEqual(releasedAt);
    // The wait is what a user pays for idle: it is on the deployment.
    expect(end.idleSandboxSeconds).toBeGreaterThan(0);
  });

  it('holds the cap when many steps want a sandbox at once: four wait, by the process table and by the records', async () => {
    const fan = Array.from({ length: 12 }, (_, i) => ({ id: `leaf${i + 1}`, command: 'true', dependsOn: ['hub'] }));
    const { deploymentId } = await t.client.submit(runDeployment([{ id: 'hub', command: call('hub-1') }, ...fan]));
    // While `hub` is held, its twelve dependents all want to start ahead; their registrations and passes decide side by side.
    const held = await t.waitFor(deploymentId, (d) => gate.calls.includes('hub-1') && fan.filter((f) => step(d, f.id)?.readyAt !== undefined).length === 4);
    const groups = t.engine.sandboxes.processGroups();
    const alive = fan.filter((f) => groups.has(f.id) && groupAlive(groups.get(f.id)!));
    expect(alive, 'sandboxes of the fan alive in /proc').toHaveLength(4);
    expect(fan.filter((f) => step(held, f.id)?.prestartedAt !== undefined)).toHaveLength(4);

    gate.open('hub-1', 'ok');
    const end = await t.waitForEnd(deploymentId);
    expect(end.status, t.logTail()).toBe('SUCCEEDED');
    expect(peakWaiting(end.steps)).toBe(4);
  });

  it('stops a pre-started sandbox whose step is skipped because its dependency failed', async () => {
    const { deploymentId } = await t.client.submit(
      runDeployment([
        { id: 'first', command: call('first-2') },
        { id: 'second', command: call('second-2'), dependsOn: ['first'] },
      ]),
    );
    await t.waitFor(deploymentId, (d) => gate.calls.includes('first-2') && step(d, 'second')?.readyAt !== undefined);
    const pgid = t.engine.sandboxes.processGroups().get('second');
    expect(pgid).toBeDefined();
    expect(groupAlive(pgid!)).toBe(true);

    gate.open('first-2', 'fail');
    const end = await t.waitForEnd(deploymentId);
    expect(end.status).toBe('FAILED');
    expect(step(end, 'first')?.status).toBe('failed');
    expect(step(end, 'second')?.status).toBe('skipped');
    expect(gate.calls).not.toContain('second-2');
    // The waiting sandbox (and anything in its process group) is gone, not left to idle.
    await t.waitFor(deploymentId, () => !groupAlive(pgid!), 10_000);
    expect(groupAlive(pgid!)).toBe(false);
    // Stopped by the engine when it skipped the step (ECS StopTask), not left to notice on its own.
    expect(t.logTail(400)).toMatch(/stopping \w+: skipped while waiting/);
  });
});
