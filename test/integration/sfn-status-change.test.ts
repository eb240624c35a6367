import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DescribeExecutionCommand, SFNClient, StartExecutionCommand, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalStepFunctions, type ExecutionStatusChangeDetail, type TaskInvocation } from '../../local/sfn/index.ts';

/**
 * The local Step Functions emits what EventBridge delivers in AWS to the safety net ("Step
 * Functions Execution Status Change" for FAILED, TIMED_OUT and ABORTED), honours the execution's
 * TimeoutSeconds by ending its running tasks, and at start re-delivers executions that ended while
 * nobody could hear it (an engine SIGKILL).
 */

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const machine = (timeoutSeconds?: number) =>
  JSON.stringify({
    StartAt: 'Work',
    ...(timeoutSeconds ? { TimeoutSeconds: timeoutSeconds } : {}),
    States: {
      Work: { Type: 'Task', Resource: 'arn:aws:states:::ecs:runTask.waitForTaskToken', Parameters: { 'Token.$': '$$.Task.Token' }, TimeoutSeconds: 100_000, End: true },
    },
  });

async function start(opts: { stateDir?: string; executionTimeoutSeconds?: number; keep?: boolean } = {}) {
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'ctd-sfn-status-'));
  const delivered: ExecutionStatusChangeDetail[] = [];
  const tasks: TaskInvocation[] = [];
  const sfn = new LocalStepFunctions({
    stateDir,
    timeScale: 0.01,
    router: async (inv) => {
      tasks.push(inv);
      return {};
    },
    onExecutionEnded: async (detail) => {
      delivered.push(detail);
    },
    ...(opts.executionTimeoutSeconds ? { executionTimeoutSeconds: opts.executionTimeoutSeconds } : {}),
  });
  await sfn.start();
  const { url } = await sfn.listen(0);
  const client = new SFNClient({ endpoint: url, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  cleanups.push(async () => {
    client.destroy();
    await sfn.stop();
    if (!opts.keep) rmSync(stateDir, { recursive: true, force: true });
  });
  return { sfn, client, delivered, tasks, stateDir };
}

async function until(ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!ok() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

describe('Local Step Functions: execution status changes and the execution timeout', () => {
  it('StopExecution: the task signal is aborted and ABORTED is delivered with the input, error and cause', async () => {
    const { sfn, client, delivered, tasks } = await start();
    const stateMachineArn = sfn.createStateMachine('stop', machine());
    const { executionArn } = await client.send(new StartExecutionCommand({ stateMachineArn, name: 'd-stop', input: '{"deploymentId":"d-stop"}' }));
    await until(() => tasks.length > 0);
    await client.send(new StopExecutionCommand({ executionArn, error: 'Console', cause: 'stopped by alice' }));
    await until(() => delivered.length > 0);
    expect(tasks[0]!.signal.aborted).toBe(true);
    expect(delivered).toEqual([
      expect.objectContaining({ executionArn, stateMachineArn, name: 'd-stop', status: 'ABORTED', input: '{"deploymentId":"d-stop"}', error: 'Console', cause: 'stopped by alice' }),
    ]);
    expect(delivered[0]!.stopDate).toBeGreaterThanOrEqual(delivered[0]!.startDate);
  });

  it('the execution TimeoutSeconds (scaled) ends it TIMED_OUT, aborts its running task and is delivered', async () => {
    const { sfn, client, delivered, tasks } = await start();
    // 100 s at the time scale 0.01: one second.
    const stateMachineArn = sfn.createStateMachine('timeout', machine(100));
    const { executionArn } = await client.send(new StartExecutionCommand({ stateMachineArn, name: 'd-timeout', input: '{}' }));
    await until(() => delivered.length > 0);
    expect((await client.send(new DescribeExecutionCommand({ executionArn }))).status).toBe('TIMED_OUT');
    expect(tasks[0]!.signal.aborted).toBe(true);
    expect(delivered[0]).toMatchObject({ status: 'TIMED_OUT', name: 'd-timeout', error: 'States.Timeout' });
  });

  it('executionTimeoutSeconds replaces a bound of days with real seconds (tests)', async () => {
    const { sfn, client, delivered } = await start({ executionTimeoutSeconds: 1 });
    const stateMachineArn = sfn.createStateMachine('days', machine(81 * 86_400));
    await client.send(new StartExecutionCommand({ stateMachineArn, name: 'd-days', input: '{}' }));
    await until(() => delivered.length > 0, 15_000);
    expect(delivered[0]).toMatchObject({ status: 'TIMED_OUT', name: 'd-days' });
  });

  it('after a crash, sweepEndedExecutions delivers the orphans and the earlier stopped ones again, never the succeeded', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'ctd-sfn-status-'));
    cleanups.push(async () => rmSync(stateDir, { recursive: true, force: true }));
    const first = await start({ stateDir, keep: true });
    const stateMachineArn = first.sfn.createStateMachine('crash', machine());
    const stopped = await first.client.send(new StartExecutionCommand({ stateMachineArn, name: 'd-stopped', input: '{}' }));
    const running = await first.client.send(new StartExecutionCommand({ stateMachineArn, name: 'd-running', input: '{}' }));
    await until(() => first.tasks.length === 2);
    await first.client.send(new StopExecutionCommand({ executionArn: stopped.executionArn }));
    await until(() => first.delivered.length === 1);
    // An engine going away: running executions stay RUNNING on disk (stop() detaches them).
    await first.sfn.stop();

    const again = await start({ stateDir, keep: true });
    expect(again.delivered).toEqual([]);
    expect(await again.sfn.sweepEndedExecutions()).toBe(2);
    const byName = Object.fromEntries(again.delivered.map((d) => [d.name, d]));
    expect(byName['d-running']).toMatchObject({ status: 'FAILED', error: 'Ctd.EngineRestarted', executionArn: running.executionArn });
    expect(byName['d-stopped']).toMatchObject({ status: 'ABORTED' });
  });

  it('a bound longer than a Node timer can hold (81 days at scale 1) never fires at once', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'ctd-sfn-status-'));
    const sfn = new LocalStepFunctions({ stateDir, timeScale: 1, router: async () => ({}), onExecutionEnded: async () => undefined });
    await sfn.start();
    cleanups.push(async () => {
      await sfn.stop();
      rmSync(stateDir, { recursive: true, force: true });
    });
    const stateMachineArn = sfn.createStateMachine('long', machine(81 * 86_400));
    const { executionArn } = await sfn.startExecution({ stateMachineArn, name: 'd-long', input: '{}' });
    await new Promise((r) => setTimeout(r, 300));
    expect(sfn.describeExecution(executionArn).status).toBe('RUNNING');
  });
});
