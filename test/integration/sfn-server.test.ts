import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DescribeExecutionCommand,
  GetExecutionHistoryCommand,
  ListExecutionsCommand,
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  SFNClient,
  StartExecutionCommand,
  StopExecutionCommand,
} from '@aws-sdk/client-sfn';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalStepFunctions, type TaskInvocation, type TaskRouter } from '../../local/sfn/index.ts';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function startEngine(router: TaskRouter, stateDir = mkdtempSync(join(tmpdir(), 'ctd-sfn-it-')), onExecutionOrphaned?: (e: { executionArn: string }) => Promise<void>) {
  const sfn = new LocalStepFunctions({ stateDir, router, timeScale: 0.01, ...(onExecutionOrphaned ? { onExecutionOrphaned } : {}) });
  await sfn.start();
  const { url } = await sfn.listen(0);
  const client = new SFNClient({ endpoint: url, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
  cleanups.push(async () => {
    client.destroy();
    await sfn.stop();
    rmSync(stateDir, { recursive: true, force: true });
  });
  return { sfn, client, stateDir };
}

function queueRouter(respond: (inv: TaskInvocation) => unknown = () => ({})) {
  const calls: TaskInvocation[] = [];
  let wake: (() => void) | undefined;
  const router: TaskRouter = async (inv) => {
    calls.push(inv);
    wake?.();
    return respond(inv);
  };
  const call = async (n: number) => {
    while (calls.length < n) await new Promise<void>((resolve) => (wake = resolve));
    return calls[n - 1] as TaskInvocation;
  };
  return { router, calls, call };
}

async function until<T>(read: () => Promise<T>, ok: (value: T) => boolean, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (ok(value) || Date.now() > end) return value;
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** At the engines' time scale 0.01, HeartbeatSeconds 30 is 300 ms. */
const tokenMachine = (heartbeatSeconds = 30) => JSON.stringify({
  StartAt: 'Work',
  States: {
    Work: {
      Type: 'Task',
      Resource: 'arn:aws:states:::ecs:runTask.waitForTaskToken',
      Parameters: { Cluster: 'local', 'Token.$': '$$.Task.Token' },
      HeartbeatSeconds: heartbeatSeconds,
      TimeoutSeconds: 3000,
      Retry: [{ ErrorEquals: ['Ctd.BackendUnreachable'], IntervalSeconds: 10, MaxAttempts: 5, BackoffRate: 1 }],
      End: true,
    },
  },
});
const TOKEN_MACHINE = tokenMachine();

describe('Local Step Functions over the AWS JSON 1.0 protocol', () => {
  it('serves start/describe/list/history and SendTaskSuccess/Heartbeat/Failure to SFNClient', async () => {
    const { router, call } = queueRouter();
    const { sfn, client } = await startEngine(router);
    // HeartbeatSeconds 200 = 2 s here: heartbeats every 200 ms leave a loaded machine a tenfold margin.
    const stateMachineArn = sfn.createStateMachine('token', tokenMachine(200));

    const { executionArn, startDate } = await client.send(new StartExecutionCommand({ stateMachineArn, name: 'first', input: '{"n":1}' }));
    expect(startDate).toBeInstanceOf(Date);
    await expect(client.send(new StartExecutionCommand({ stateMachineArn, name: 'first', input: '{"n":2}' }))).rejects.toMatchObject({ name: 'ExecutionAlreadyExists' });

    const first = await call(1);
    expect(first.resource).toBe('arn:aws:states:::ecs:runTask.waitForTaskToken');
    // Heartbeats keep the task alive past its 2 s heartbeat limit (until 3 s after it started).
    const aliveUntil = Date.now() + 3000;
    while (Date.now() < aliveUntil) {
      await new Promise((r) => setTimeout(r, 200));
      await client.send(new SendTaskHeartbeatCommand({ taskToken: first.taskToken }));
    }
    expect((await client.send(new DescribeExecutionCommand({ executionArn }))).status).toBe('RUNNING');
    await client.send(new SendTaskFailureCommand({ taskToken: first.taskToken, error: 'Ctd.BackendUnreachable', cause: 'retry me' }));
    const second = await call(2);
    expect(second.taskToken).not.toEqual(first.taskToken);
    await expect(client.send(new SendTaskSuccessCommand({ taskToken: first.taskToken, output: '{}' }))).rejects.toMatchObject({ name: 'TaskTimedOut' });
    await expect(client.send(new SendTaskSuccessCommand({ taskToken: 'A'.repeat(64), output: '{}' }))).rejects.toMatchObject({ name: 'TaskDoesNotExist' });
    await expect(client.send(new SendTaskSuccessCommand({ taskToken: 'bad token', output: '{}' }))).rejects.toMatchObject({ name: 'InvalidToken' });
    await client.send(new SendTaskSuccessCommand({ taskToken: second.taskToken, output: '{"done":true}' }));

    const described = await until(
      () => client.send(new DescribeExecutionCommand({ executionArn })),
      (d) => d.status !== 'RUNNING',
    );
    expect(described).toMatchObject({ status: 'SUCCEEDED', name: 'first', stateMachineArn, output: '{"done":true}', input: '{"n":1}' });
    expect(described.stopDate).toBeInstanceOf(Date);

    const listed = await client.send(new ListExecutionsCommand({ stateMachineArn, statusFilter: 'SUCCEEDED' }));
    expect(listed.executions?.map((e) => e.executionArn)).toEqual([executionArn]);

    const { events = [] } = await client.send(new GetExecutionHistoryCommand({ executionArn }));
    expect(events.map((e) => e.type)).toEqual([
      'ExecutionStarted',
      'TaskStateEntered',
      'TaskScheduled',
      'TaskStarted',
      'TaskSubmitted',
      'TaskFailed',
      'TaskScheduled',
      'TaskStarted',
      'TaskSubmitted',
      'TaskSucceeded',
      'TaskStateExited',
      'ExecutionSucceeded',
    ]);
    expect(events[5]?.taskFailedEventDetails).toEqual({ resourceType: 'ecs', resource: 'runTask.waitForTaskToken', error: 'Ctd.BackendUnreachable', cause: 'retry me' });
    expect(events[0]?.timestamp).toBeInstanceOf(Date);
    expect(events.every((e, i) => e.id === i + 1)).toBe(true);
    const reversed = await client.send(new GetExecutionHistoryCommand({ executionArn, reverseOrder: true, maxResults: 2 }));
    expect(reversed.events?.map((e) => e.type)).toEqual(['ExecutionSucceeded', 'TaskStateExited']);
    expect(reversed.nextToken).toBeDefined();

    await expect(client.send(new DescribeExecutionCommand({ executionArn: `${executionArn}-nope` }))).rejects.toMatchObject({ name: 'ExecutionDoesNotExist' });
  });

  it('fails the task with States.HeartbeatTimeout when heartbeats stop', async () => {
    const { router, call } = queueRouter();
    const { sfn, client } = await startEngine(router);
    const stateMachineArn = sfn.createStateMachine('heartbeat', TOKEN_MACHINE);
    const { executionArn } = await client.send(new StartExecutionCommand({ stateMachineArn }));
    const first = await call(1);
    const described = await until(() => client.send(new DescribeExecutionCommand({ executionArn })), (d) => d.status !== 'RUNNING');
    expect(described).toMatchObject({ status: 'FAILED', error: 'States.HeartbeatTimeout' });
    expect(first.signal.aborted).toBe(true);
    const { events = [] } = await client.send(new GetExecutionHistoryCommand({ executionArn }));
    expect(events.find((e) => e.type === 'TaskTimedOut')?.taskTimedOutEventDetails).toMatchObject({ error: 'States.HeartbeatTimeout' });
  });

  it('StopExecution aborts the execution and the running router signal', async () => {
    const { router, call } = queueRouter();
    const { sfn, client } = await startEngine(router);
    const stateMachineArn = sfn.createStateMachine('stop', TOKEN_MACHINE);
    const { executionArn } = await client.send(new StartExecutionCommand({ stateMachineArn }));
    const first = await call(1);
    const aborted = new Promise<void>((resolve) => first.signal.addEventListener('abort', () => resolve()));
    await client.send(new StopExecutionCommand({ executionArn, error: 'Ctd.Cancelled', cause: 'by test' }));
    await aborted;
    const described = await client.send(new DescribeExecutionCommand({ executionArn }));
    expect(described).toMatchObject({ status: 'ABORTED', error: 'Ctd.Cancelled', cause: 'by test' });
    await expect(client.send(new SendTaskSuccessCommand({ taskToken: first.taskToken, output: '{}' }))).rejects.toMatchObject({ name: 'TaskTimedOut' });
    const { events = [] } = await client.send(new GetExecutionHistoryCommand({ executionArn }));
    expect(events.at(-1)?.type).toBe('ExecutionAborted');
  });

  it('keeps executions across a restart and marks the running one Ctd.EngineRestarted', async () => {
    const { router, call } = queueRouter();
    const { sfn, client, stateDir } = await startEngine(router);
    const stateMachineArn = sfn.createStateMachine('restart', TOKEN_MACHINE);
    const done = await client.send(new StartExecutionCommand({ stateMachineArn, name: 'done' }));
    await client.send(new SendTaskSuccessCommand({ taskToken: (await call(1)).taskToken, output: '1' }));
    await sfn.waitForExecution(done.executionArn ?? '');
    const before = await client.send(new GetExecutionHistoryCommand({ executionArn: done.executionArn }));
    const running = await client.send(new StartExecutionCommand({ stateMachineArn, name: 'running' }));
    const runningCall = await call(2);
    await sfn.stop();
    expect(runningCall.signal.aborted).toBe(true);

    const orphans: string[] = [];
    const again = await startEngine(async () => ({}), stateDir, async (e) => {
      orphans.push(e.executionArn);
    });
    expect(orphans).toEqual([running.executionArn]);
    const after = await again.client.send(new GetExecutionHistoryCommand({ executionArn: done.executionArn }));
    expect(after.events).toEqual(before.events);
    const orphan = await again.client.send(new DescribeExecutionCommand({ executionArn: running.executionArn }));
    expect(orphan).toMatchObject({ status: 'FAILED', error: 'Ctd.EngineRestarted' });
    const listed = await again.client.send(new ListExecutionsCommand({ stateMachineArn }));
    expect(listed.executions?.map((e) => [e.name, e.status])).toEqual([
      ['running', 'FAILED'],
      ['done', 'SUCCEEDED'],
    ]);
  });
});

describe('statemachine/deployment.asl.json on the local runtime', () => {
  const substitutions: Record<string, string> = {
    PrepareFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:prepare',
    AwaitDependenciesFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:await-dependencies',
    AwaitReleaseFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:await-release',
    RecordStepResultFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:record-step-result',
    RecordStepFailureFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:record-step-failure',
    GracePeriodFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:grace-period',
    AbortStragglersFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:abort-stragglers',
    SummarizeFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:summarize',
    DeleteSecretsFunctionArn: 'arn:aws:lambda:us-east-1:000000000000:function:delete-secrets',
    ClusterArn: 'arn:aws:ecs:us-east-1:000000000000:cluster/ctd',
    TaskDefinitionFamily: 'ctd-runner',
    SandboxSubnetIds: 'subnet-a,subnet-b',
    SandboxSecurityGroupIds: 'sg-a',
  };
  const definition = readFileSync(new URL('../../statemachine/deployment.asl.json', import.meta.url), 'utf8').replace(
    /\$\{(\w+)\}/g,
    (_, key: string) => substitutions[key] ?? `missing-${key}`,
  );

  /** A fake deployment: lambdas and sandbox steps are functions; step `fail` fails with Ctd.StepFailed. */
  function deploymentRouter(sfn: () => LocalStepFunctions, stepIds: string[]) {
    const invoked: string[] = [];
    let failed = false;
    const router: TaskRouter = async (inv) => {
      const params = inv.parameters as { FunctionName?: string; Payload?: Record<string, unknown>; Overrides?: { ContainerOverrides: Array<{ Environment: Array<{ Name: string; Value: string }> }> } };
      if (inv.resource.startsWith('arn:aws:states:::ecs:runTask')) {
        const env = Object.fromEntries((params.Overrides?.ContainerOverrides[0]?.Environment ?? []).map((e) => [e.Name, e.Value]));
        invoked.push(`ecs:${env.CTD_STEP_ID}`);
        const token = env.CTD_TASK_TOKEN ?? '';
        expect(token).toBe(inv.taskToken);
        setTimeout(() => {
          if (env.CTD_STEP_ID === 'fail') sfn().sendTaskFailure(token, 'Ctd.StepFailed', 'exit 2');
          else sfn().sendTaskSuccess(token, JSON.stringify({ step: env.CTD_STEP_ID }));
        }, 5);
        return { tasks: [{ taskArn: 'local' }] };
      }
      const name = String(params.FunctionName).split(':').pop();
      const payload = params.Payload ?? {};
      invoked.push(`lambda:${name}${payload.stepId ? `:${String(payload.stepId)}` : ''}`);
      switch (name) {
        case 'prepare':
          return { stepIds, batches: [stepIds] };
        case 'await-dependencies':
          setTimeout(() => sfn().sendTaskSuccess(String(payload.taskToken), JSON.stringify({ run: true, timeoutSeconds: 600 })), 5);
          return null;
        case 'record-step-failure': {
          const startGrace = !failed;
          failed = true;
          return { startGrace };
        }
        case 'grace-period':
          setTimeout(() => sfn().sendTaskSuccess(String(payload.taskToken), '{}'), 5);
          return null;
        case 'summarize':
          return { status: failed ? 'FAILED' : 'SUCCEEDED', counts: { steps: stepIds.length } };
        case 'delete-secrets':
          return failed ? { status: 'FAILED', error: 'Ctd.StepFailed', cause: 'step fail failed' } : { status: 'SUCCEEDED', error: null, cause: null };
        default:
          return null;
      }
    };
    return { router, invoked };
  }

  it('runs a successful deployment end to end', async () => {
    let engine: LocalStepFunctions | undefined;
    const { router, invoked } = deploymentRouter(() => engine as LocalStepFunctions, ['web', 'db']);
    const { sfn, client } = await startEngine(router);
    engine = sfn;
    const stateMachineArn = sfn.createStateMachine('ctd-deployment', definition);
    const { executionArn } = await client.send(new StartExecutionCommand({ stateMachineArn, input: JSON.stringify({ deploymentId: 'd-1' }) }));
    const described = await sfn.waitForExecution(executionArn ?? '');
    expect(described.status).toBe('SUCCEEDED');
    expect(invoked[0]).toBe('lambda:prepare');
    expect(invoked).toEqual(expect.arrayContaining(['ecs:bastion-open', 'ecs:web', 'ecs:db', 'lambda:record-step-result:web', 'ecs:bastion-close', 'lambda:delete-secrets']));
    expect(invoked.indexOf('ecs:bastion-close')).toBeGreaterThan(invoked.indexOf('lambda:summarize'));

    const { events = [] } = await client.send(new GetExecutionHistoryCommand({ executionArn, maxResults: 1000 }));
    const types = events.map((e) => e.type);
    for (const type of ['MapStateEntered', 'MapIterationStarted', 'MapIterationSucceeded', 'ChoiceStateEntered', 'TaskSubmitted', 'SucceedStateEntered', 'ExecutionSucceeded']) {
      expect(types).toContain(type);
    }
    const ids = new Set(events.map((e) => e.id));
    expect(events.slice(1).every((e) => ids.has(e.previousEventId))).toBe(true);
  });

  it('runs a failing deployment through grace period, cleanup and the Fail state', async () => {
    let engine: LocalStepFunctions | undefined;
    const { router, invoked } = deploymentRouter(() => engine as LocalStepFunctions, ['ok', 'fail']);
    const { sfn } = await startEngine(router);
    engine = sfn;
    const stateMachineArn = sfn.createStateMachine('ctd-deployment', definition);
    const { executionArn } = await sfn.startExecution({ stateMachineArn, input: JSON.stringify({ deploymentId: 'd-2' }) });
    const described = await sfn.waitForExecution(executionArn);
    expect(described).toMatchObject({ status: 'FAILED', error: 'Ctd.StepFailed', cause: 'step fail failed' });
    expect(invoked).toEqual(expect.arrayContaining(['lambda:record-step-failure:fail', 'lambda:grace-period', 'lambda:abort-stragglers', 'ecs:bastion-close', 'lambda:delete-secrets']));
    const types = sfn.getExecutionHistory(executionArn).map((e) => e.type);
    expect(types).toContain('FailStateEntered');
    expect(types.at(-1)).toBe('ExecutionFailed');
  });
});
