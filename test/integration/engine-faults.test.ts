import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorName } from '../../core/errors.ts';
import { groupAlive, processAlive, runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * Faults through the whole engine, with time scaled by 0.05: HeartbeatSeconds 300 becomes 15 s,
 * the runner heartbeats every second. Nothing here sleeps for the real bounds.
 */

let t: TestEngine;
beforeAll(async () => {
  t = await startTestEngine({ timeScale: 0.05 });
});
afterAll(async () => {
  await t?.stop();
});

/** The process group of the step's sandbox once the step runs (a pre-started sandbox registers attempt 1 while it still waits). */
async function runningGroup(deploymentId: string, stepId: string): Promise<number> {
  await t.waitFor(deploymentId, (d) => {
    const step = d.steps.find((s) => s.stepId === stepId);
    return step?.status === 'running' && step.attempt === 1;
  });
  for (let i = 0; i < 100; i++) {
    const pgid = t.engine.sandboxes.processGroups().get(stepId);
    if (pgid) return pgid;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no sandbox for ${stepId}`);
}

/** Host pids of the live (not zombie) processes whose command line is exactly `argv`. */
function processesRunning(argv: string[]): number[] {
  const wanted = `${argv.join('\0')}\0`;
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8') === wanted;
      } catch {
        return false;
      }
    })
    .map(Number)
    .filter(processAlive);
}

describe('Local engine: a sandbox that stops heartbeating', () => {
  it('fails its step with States.HeartbeatTimeout, kills the sandbox and still cleans up', async () => {
    const { deploymentId } = await t.client.submit(runDeployment([{ id: 'hang', command: 'sleep 120' }]));
    const pgid = await runningGroup(deploymentId, 'hang');
    process.kill(-pgid, 'SIGSTOP');
    const done = await t.waitForEnd(deploymentId);
    const hang = done.steps.find((s) => s.stepId === 'hang');
    expect(hang).toMatchObject({ status: 'failed', error: 'States.HeartbeatTimeout' });
    expect(done.status).toBe('FAILED');
    expect(done.steps.find((s) => s.stepId === 'bastion-close')?.status).toBe('succeeded');
    await expect.poll(() => groupAlive(pgid), { timeout: 10_000 }).toBe(false);
  });
});

describe('Local engine: cancel', () => {
  it('stops running sandboxes (their processes are gone), skips the rest and still runs Cleanup', async () => {
    // A duration no other process on the machine uses: it finds the user's own processes, which run
    // in a process group (and a pid namespace) of their own, apart from the runner's.
    const marker = `${300 + (process.pid % 1000)}.${Date.now() % 100_000}`;
    const body = runDeployment([
      { id: 'long', command: `sleep ${marker} & sleep ${marker}; wait` },
      { id: 'after', command: 'true', dependsOn: ['long'] },
    ]);
    const { deploymentId } = await t.client.submit(body);
    const pgid = await runningGroup(deploymentId, 'long');
    expect(groupAlive(pgid)).toBe(true);
    await expect.poll(() => processesRunning(['sleep', marker]).length, { timeout: 20_000 }).toBe(2);

    expect(await t.client.cancel(deploymentId)).toEqual({ deploymentId, status: 'CANCELLING' });
    const done = await t.waitForEnd(deploymentId);
    const status = Object.fromEntries(done.steps.map((s) => [s.stepId, s.status]));
    expect(status).toEqual({ 'bastion-open': 'succeeded', long: 'cancelled', after: 'cancelled', 'bastion-close': 'succeeded' });
    expect(done).toMatchObject({ status: 'CANCELLED', error: ErrorName.Cancelled });
    await expect.poll(() => groupAlive(pgid), { timeout: 10_000 }).toBe(false);
    await expect.poll(() => processesRunning(['sleep', marker]), { timeout: 10_000 }).toEqual([]);
    await expect(t.client.cancel(deploymentId)).rejects.toMatchObject({ status: 409 });
  });
});
