import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attributeEvents } from '../../core/history.ts';
import { FINAL_DEPLOYMENT_STATUSES } from '../../core/model.ts';
import { runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * A workflow wider than one inline Map's 40 slots (issue 12): every step waits in its sandbox on a
 * gate file, so no iteration ends until the test opens the gate. With one Map of 40 slots the 41st
 * step never got its iteration while the first 40 waited; with a Map per batch all 45 run at once.
 * The test waits on the steps' records only, never on time.
 */

const WIDTH = 45;
let t: TestEngine;
let gateDir: string;
beforeAll(async () => {
  // Not under /tmp: the sandbox gets a private /tmp (local/sandbox/launcher.ts), the rest of / read-only.
  gateDir = await mkdtemp('/var/tmp/ctd-wide-12-gate-');
  t = await startTestEngine({ timeScale: 0.5 });
});
afterAll(async () => {
  await t?.stop();
  if (gateDir) await rm(gateDir, { recursive: true, force: true });
});

describe('a workflow wider than 40 steps', () => {
  it('runs all 45 independent steps at the same time, and each step\'s history stays under its own step id', async () => {
    const gate = join(gateDir, 'open');
    const ids = Array.from({ length: WIDTH }, (_, i) => `w${String(i + 1).padStart(2, '0')}`);
    const { deploymentId } = await t.client.submit(
      runDeployment(ids.map((id) => ({ id, command: `while [ ! -e ${gate} ]; do sleep 0.3; done; echo ${id} done` }))),
    );
    // All 45 released and held in their user code at once: none of them can end before the gate opens.
    const together = await t.waitFor(deploymentId, (d) => d.steps.filter((s) => s.status === 'running').length === WIDTH || FINAL_DEPLOYMENT_STATUSES.includes(d.status), 240_000);
    expect(together.status).toBe('RUNNING');
    expect(together.steps.filter((s) => ids.includes(s.stepId) && s.status === 'running').map((s) => s.stepId).sort()).toEqual(ids);

    await writeFile(gate, '');
    const end = await t.waitForEnd(deploymentId, 240_000);
    expect(end.status, t.logTail()).toBe('SUCCEEDED');
    expect(end.steps.filter((s) => ids.includes(s.stepId)).map((s) => s.status)).toEqual(ids.map(() => 'succeeded'));

    // The API's history: each step's AwaitDependencies and its sandbox task under its own id, across both batches.
    const history = await t.client.history(deploymentId);
    const byStep = new Map<string, string[]>();
    for (const event of history.events) if (event.stepId) byStep.set(event.stepId, [...(byStep.get(event.stepId) ?? []), event.type]);
    for (const id of ids) {
      const types = byStep.get(id) ?? [];
      expect(types.filter((type) => type === 'MapIterationStarted'), id).toHaveLength(1);
      expect(types.filter((type) => type === 'TaskStateEntered'), id).toHaveLength(3); // AwaitDependencies, RunStepInSandbox, RecordStepResult
      expect(types.filter((type) => type === 'TaskSucceeded'), id).toHaveLength(3);
    }
    // History size (AWS's 25,000-event limit, docs/DEPLOY-AWS.md): at most 22 events per succeeded step,
    // and the engine's own events stay under 60 with the batches' 6 each.
    for (const id of ids) expect((byStep.get(id) ?? []).length, id).toBeLessThanOrEqual(22);
    expect(history.events.filter((e) => !e.stepId).length).toBeLessThanOrEqual(60 + 6 * 2);
    // The batches' own iterations (two: 40 + 5) belong to no step.
    const batchIterations = history.events.filter((e) => e.type === 'MapIterationStarted' && !e.stepId);
    expect(batchIterations).toHaveLength(2);
    // The same attribution from the raw events, as the CLI and the console get them.
    expect(attributeEvents(history.events, ids).filter((e) => e.stepId === 'w45' && e.type === 'TaskScheduled')).toHaveLength(3);
  }, 600_000);
});
