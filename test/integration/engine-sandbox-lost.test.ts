import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorName, HEARTBEAT_TIMEOUT_SECONDS } from '../../core/errors.ts';
import { runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * A sandbox that ECS stops before it answered fails its step from the task's STOPPED event, not
 * at the heartbeat timeout. Local ECS emits the same "ECS Task State Change" events as Fargate,
 * into the same handler. Time scale 0.2: the heartbeat timeout is 60 s, the retry 1 s later; a
 * sandbox's "Fargate start" takes 1.5 s.
 */

const TIME_SCALE = 0.2;
const HEARTBEAT_MS = HEARTBEAT_TIMEOUT_SECONDS * TIME_SCALE * 1000;

let t: TestEngine;
beforeAll(async () => {
  t = await startTestEngine({ timeScale: TIME_SCALE, sandboxStartLatencyMs: 1500 });
});
afterAll(async () => {
  await t?.stop();
});

async function newGroup(deploymentId: string, stepId: string, not?: number): Promise<number> {
  await t.waitFor(deploymentId, (d) => d.steps.some((s) => s.stepId === stepId && s.status === 'running'));
  for (let i = 0; i < 300; i++) {
    const pgid = t.engine.sandboxes.processGroups().get(stepId);
    // The runner must hold its task (ids arrive after the start latency) and have started the command.
    if (pgid && pgid !== not) {
      const view = await t.client.get(deploymentId);
      const logs = await t.client.logs(deploymentId, { step: stepId });
      const attempt = view.steps.find((s) => s.stepId === stepId)?.attempt ?? 0;
      if (logs.lines.some((l) => l.attempt === attempt && l.text.includes('started'))) return pgid;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no running sandbox for ${stepId}\n${t.logTail()}`);
}

const elapsed = (from: string | undefined, to: string | undefined) => Date.parse(to ?? '') - Date.parse(from ?? '');

describe('Local engine: a sandbox ECS stops', () => {
  it('fails a step whose sandbox never starts within seconds, with ECS\'s stoppedReason, after one retry', async () => {
    const reason = 'CannotPullContainerError: pull image manifest has been retried 5 time(s): failed to resolve ref ctd-runner:latest';
    t.engine.sandboxes.failStarts('pull', reason);
    const { deploymentId } = await t.client.submit(runDeployment([{ id: 'pull', command: 'true' }]));
    const done = await t.waitForEnd(deploymentId);
    t.engine.sandboxes.failStarts('pull', undefined);

    const step = done.steps.find((s) => s.stepId === 'pull');
    expect(step, t.logTail()).toMatchObject({ status: 'failed', error: ErrorName.SandboxLost, attempt: 2 });
    expect(step?.cause).toContain(reason);
    expect(step?.cause).toContain('TaskFailedToStart');
    expect(step?.stopReason).toContain(reason);
    // Its sandbox started ahead of the release failed to start too: that was no attempt (the step fell back to a start at its release).
    expect(step?.prestartFailure).toContain(reason);
    // Two starts of 1.5 s and a 1 s retry, far inside one heartbeat timeout.
    expect(elapsed(step?.startedAt, step?.endedAt)).toBeLessThan(HEARTBEAT_MS / 3);
    expect(done).toMatchObject({ status: 'FAILED', error: ErrorName.SandboxLost });
    expect(done.steps.find((s) => s.stepId === 'bastion-close')?.status).toBe('succeeded');
    const logs = await t.client.logs(deploymentId, { step: 'pull' });
    expect(logs.lines.filter((l) => l.text.startsWith('sandbox lost:')).map((l) => l.attempt)).toEqual([1, 2]);
  });

  it('fails a step whose sandbox is killed mid-step within seconds, with the exit, after one retry', async () => {
    const { deploymentId } = await t.client.submit(runDeployment([{ id: 'oom', command: 'sleep 120' }]));
    const first = await newGroup(deploymentId, 'oom');
    const killedAt = Date.now();
    process.kill(-first, 'SIGKILL'); // as the kernel's OOM killer would
    const second = await newGroup(deploymentId, 'oom', first);
    process.kill(-second, 'SIGKILL');
    const done = await t.waitForEnd(deploymentId);

    const step = done.steps.find((s) => s.stepId === 'oom');
    expect(step, t.logTail()).toMatchObject({ status: 'failed', error: ErrorName.SandboxLost, attempt: 2 });
    expect(step?.cause).toContain('Essential container in task exited');
    expect(step?.cause).toContain('exit code 137');
    expect(step?.stopReason).toContain('killed by SIGKILL');
    expect(Date.parse(step?.endedAt ?? '') - killedAt).toBeLessThan(HEARTBEAT_MS / 3);
    expect(done.status).toBe('FAILED');
  });

  it('lets a retry succeed after a lost sandbox, and still shows why the first one stopped', async () => {
    const { deploymentId } = await t.client.submit(runDeployment([{ id: 'flaky', command: 'sleep 2' }]));
    process.kill(-(await newGroup(deploymentId, 'flaky')), 'SIGKILL');
    const done = await t.waitForEnd(deploymentId);
    const step = done.steps.find((s) => s.stepId === 'flaky');
    expect(step, t.logTail()).toMatchObject({ status: 'succeeded', attempt: 2 });
    expect(step?.stopReason).toContain('exit code 137');
    expect(done.status).toBe('SUCCEEDED');
  });
});
