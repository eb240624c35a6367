import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { attributeEvents } from '../../core/history.ts';
import { LocalStepFunctions, SfnError, type TaskInvocation, type TaskRouter } from '../../local/sfn/index.ts';

const dirs: string[] = [];
const engines: LocalStepFunctions[] = [];

async function engine(router: TaskRouter, extra: { stateDir?: string; onExecutionOrphaned?: (e: { executionArn: string }) => Promise<void> } = {}) {
  const stateDir = extra.stateDir ?? mkdtempSync(join(tmpdir(), 'ctd-sfn-'));
  if (!extra.stateDir) dirs.push(stateDir);
  const sfn = new LocalStepFunctions({ stateDir, router, timeScale: 0.01, ...(extra.onExecutionOrphaned ? { onExecutionOrphaned: extra.onExecutionOrphaned } : {}) });
  engines.push(sfn);
  await sfn.start();
  return { sfn, stateDir };
}

afterEach(async () => {
  for (const sfn of engines.splice(0)) await sfn.stop();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

const machine = (states: Record<string, unknown>, startAt = Object.keys(states)[0]) => JSON.stringify({ StartAt: startAt, States: states });

function tokenTask(extra: Record<string, unknown> = {}) {
  return {
    Type: 'Task',
    Resource: 'arn:aws:states:::lambda:invoke.waitForTaskToken',
    Parameters: { FunctionName: 'arn:aws:lambda:us-east-1:000000000000:function:wait', Payload: { 'token.$': '$$.Task.Token', 'who.$': '$.who' } },
    TimeoutSeconds: 300,
    ...extra,
  };
}

/** A Map over `$.items` whose every iteration is one token task for its item (`who`). */
function mapOfTokenTasks() {
  return {
    Type: 'Map',
    ItemsPath: '$.items',
    ItemSelector: { 'who.$': '$$.Map.Item.Value' },
    ItemProcessor: { ProcessorConfig: { Mode: 'INLINE' }, StartAt: 'Wait', States: { Wait: { ...tokenTask(), End: true } } },
    End: true,
  };
}

/** Resolves with each invocation as the router receives it. */
function recordingRouter(onCall: (inv: TaskInvocation) => unknown = () => ({})) {
  const calls: TaskInvocation[] = [];
  const waiters: Array<() => void> = [];
  const router: TaskRouter = async (inv) => {
    calls.push(inv);
    waiters.splice(0).forEach((w) => w());
    return onCall(inv);
  };
  const nextCall = async (count: number) => {
    while (calls.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
    return calls[count - 1] as TaskInvocation;
  };
  return { router, calls, nextCall };
}

describe('Class: LocalStepFunctions', () => {
  describe('Method: createStateMachine', () => {
    it('rejects a definition asl-validator rejects', async () => {
      const { sfn } = await engine(async () => ({}));
      expect(() => sfn.createStateMachine('bad', machine({ A: { Type: 'Pass', Next: 'Missing' } }))).toThrowError(SfnError);
    });
  });

  describe('Method: startExecution', () => {
    it('wraps a lambda:invoke result in the Lambda envelope and routes by resource', async () => {
      const { router, calls } = recordingRouter(() => ({ answer: 42 }));
      const { sfn } = await engine(router);
      const arn = sfn.createStateMachine(
        'envelope',
        machine({
          Call: {
            Type: 'Task',
            Resource: 'arn:aws:states:::lambda:invoke',
            Parameters: { FunctionName: 'fn', Payload: { 'x.$': '$.x' } },
            TimeoutSeconds: 60,
            End: true,
          },
        }),
      );
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, input: '{"x":1}' });
      const done = await sfn.waitForExecution(executionArn);
      expect(done.status).toBe('SUCCEEDED');
      expect(JSON.parse(done.output ?? '')).toEqual({ ExecutedVersion: '$LATEST', Payload: { answer: 42 }, StatusCode: 200 });
      expect(calls[0]).toMatchObject({ resource: 'arn:aws:states:::lambda:invoke', parameters: { FunctionName: 'fn', Payload: { x: 1 } }, stateName: 'Call' });
      expect(calls[0]?.taskToken).toBeUndefined();
    });

    it('runs an execution whose TimeoutSeconds is past what a Node timer holds (the 81-day bound timed out at once)', async () => {
      const { sfn } = await engine(async () => ({}));
      // 3e8 s × timeScale 0.01 = 3e9 ms > 2^31 − 1: an unclamped timer fires after 1 ms.
      const arn = sfn.createStateMachine('long-bound', JSON.stringify({ StartAt: 'W', TimeoutSeconds: 300_000_000, States: { W: { Type: 'Wait', Seconds: 5, End: true } } }));
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, input: '{}' });
      expect((await sfn.waitForExecution(executionArn)).status).toBe('SUCCEEDED');
    });

    it('fails a Lambda task with the error name and Lambda cause shape, visible to Catch', async () => {
      const { sfn } = await engine(async () => {
        throw Object.assign(new Error('backend down'), { name: 'Ctd.BackendUnreachable' });
      });
      const arn = sfn.createStateMachine(
        'lambda-error',
        machine({
          Call: {
            Type: 'Task',
            Resource: 'arn:aws:states:::lambda:invoke',
            Parameters: { FunctionName: 'fn' },
            TimeoutSeconds: 60,
            Catch: [{ ErrorEquals: ['Ctd.BackendUnreachable'], ResultPath: '$.error', Next: 'Done' }],
            Next: 'Done',
          },
          Done: { Type: 'Succeed' },
        }),
      );
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn });
      const done = await sfn.waitForExecution(executionArn);
      const output = JSON.parse(done.output ?? '') as { error: { Error: string; Cause: string } };
      expect(output.error.Error).toBe('Ctd.BackendUnreachable');
      expect(JSON.parse(output.error.Cause)).toEqual({ errorMessage: 'backend down', errorType: 'Ctd.BackendUnreachable' });
      const failed = sfn.getExecutionHistory(executionArn).find((e) => e.type === 'TaskFailed');
      expect(failed?.taskFailedEventDetails).toMatchObject({ resourceType: 'lambda', resource: 'invoke', error: 'Ctd.BackendUnreachable' });
    });

    it('fails an ecs:runTask.waitForTaskToken whose RunTask placed no task (failures) with AmazonECS.Unknown; request-response returns the failures', async () => {
      const refused = { tasks: [], failures: [{ reason: 'Capacity is unavailable at this time' }] };
      const { sfn } = await engine(async () => refused);
      const ecsTask = (resource: string, next: string) => ({
        Type: 'Task',
        Resource: `arn:aws:states:::ecs:${resource}`,
        Parameters: { Cluster: 'c', TaskDefinition: 'td', Overrides: { 'token.$': '$$.Task.Token' } },
        ResultPath: '$.runTask',
        TimeoutSeconds: 300,
        Catch: [{ ErrorEquals: ['AmazonECS.Unknown'], ResultPath: '$.error', Next: next }],
        Next: next,
      });
      const arn = sfn.createStateMachine(
        'ecs-refused',
        machine({ Plain: ecsTask('runTask', 'Wait'), Wait: ecsTask('runTask.waitForTaskToken', 'Done'), Done: { Type: 'Succeed' } }),
      );
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, input: '{}' });
      const done = await sfn.waitForExecution(executionArn);
      const output = JSON.parse(done.output ?? '') as { runTask: unknown; error: { Error: string; Cause: string } };
      expect(output.runTask).toEqual(refused);
      expect(output.error.Error).toBe('AmazonECS.Unknown');
      expect(output.error.Cause).toContain('Capacity is unavailable at this time');
    });

    it('rejects a second execution with the same name like AWS', async () => {
      const { sfn } = await engine(async () => ({}));
      const arn = sfn.createStateMachine('dupe', machine({ A: { Type: 'Pass', End: true } }));
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, name: 'one' });
      await sfn.waitForExecution(executionArn);
      await expect(sfn.startExecution({ stateMachineArn: arn, name: 'one' })).rejects.toMatchObject({ code: 'ExecutionAlreadyExists' });
    });
  });

  describe('Task tokens', () => {
    it('completes a waitForTaskToken task with SendTaskSuccess and records AWS events in order', async () => {
      const { router, nextCall } = recordingRouter();
      const { sfn } = await engine(router);
      const arn = sfn.createStateMachine('token', machine({ Wait: { ...tokenTask(), ResultPath: '$.release', End: true } }));
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, input: '{"who":"a"}' });
      const call = await nextCall(1);
      expect(call.taskToken).toMatch(/^[A-Za-z0-9_-]{40,}$/);
      expect(call.parameters).toMatchObject({ Payload: { token: call.taskToken, who: 'a' } });
      sfn.sendTaskSuccess(call.taskToken ?? '', '{"run":true}');
      const done = await sfn.waitForExecution(executionArn);
      expect(JSON.parse(done.output ?? '')).toEqual({ who: 'a', release: { run: true } });

      const history = sfn.getExecutionHistory(executionArn);
      expect(history.map((e) => e.type)).toEqual([
        'ExecutionStarted',
        'TaskStateEntered',
        'TaskScheduled',
        'TaskStarted',
        'TaskSubmitted',
        'TaskSucceeded',
        'TaskStateExited',
        'ExecutionSucceeded',
      ]);
      history.forEach((event, i) => {
        expect(event.id).toBe(i + 1);
        expect(event.previousEventId).toBe(i);
      });
      expect(history[2]?.taskScheduledEventDetails).toMatchObject({ resourceType: 'lambda', resource: 'invoke.waitForTaskToken', timeoutInSeconds: 300 });
      expect(() => sfn.sendTaskSuccess(call.taskToken ?? '', '{}')).toThrowError(expect.objectContaining({ code: 'TaskTimedOut' }));
      expect(() => sfn.sendTaskHeartbeat('not a token!')).toThrowError(expect.objectContaining({ code: 'InvalidToken' }));
      expect(() => sfn.sendTaskHeartbeat('A'.repeat(64))).toThrowError(expect.objectContaining({ code: 'TaskDoesNotExist' }));
    });

    it('fails the task on HeartbeatSeconds without a heartbeat, and heartbeats keep it alive', async () => {
      const { router, nextCall } = recordingRouter();
      const { sfn } = await engine(router);
      // HeartbeatSeconds 20 at timeScale 0.01 = 200 ms.
      const arn = sfn.createStateMachine('heartbeat', machine({ Wait: { ...tokenTask(), HeartbeatSeconds: 20, End: true } }));
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, input: '{"who":"a"}' });
      const call = await nextCall(1);
      for (let i = 0; i < 4; i++) {
        await new Promise((r) => setTimeout(r, 120));
        sfn.sendTaskHeartbeat(call.taskToken ?? '');
      }
      expect(sfn.describeExecution(executionArn).status).toBe('RUNNING');
      const done = await sfn.waitForExecution(executionArn);
      expect(done).toMatchObject({ status: 'FAILED', error: 'States.HeartbeatTimeout' });
      expect(sfn.getExecutionHistory(executionArn).map((e) => e.type)).toContain('TaskTimedOut');
      expect(call.signal.aborted).toBe(true);
    });

    it('ends the tasks of other branches with a failed execution: none of their timers writes to its history afterwards', async () => {
      const { router, nextCall } = recordingRouter();
      const { sfn } = await engine(router);
      // Branch A waits on a token for up to 30 s × 0.01 = 300 ms; branch B fails at once.
      const arn = sfn.createStateMachine(
        'failed-branch',
        machine({
          Both: {
            Type: 'Parallel',
            Branches: [
              { StartAt: 'Wait', States: { Wait: { ...tokenTask(), TimeoutSeconds: 30, End: true } } },
              { StartAt: 'Boom', States: { Boom: { Type: 'Fail', Error: 'Branch.Failed', Cause: 'boom' } } },
            ],
            End: true,
          },
        }),
      );
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, input: '{"who":"a"}' });
      const call = await nextCall(1);
      expect(await sfn.waitForExecution(executionArn)).toMatchObject({ status: 'FAILED', error: 'Branch.Failed' });
      // Past the waiting task's own timeout: the execution's last event stays its end.
      await new Promise((r) => setTimeout(r, 450));
      expect(sfn.getExecutionHistory(executionArn).at(-1)?.type).toBe('ExecutionFailed');
      expect(call.signal.aborted).toBe(true);
    });

    it('keeps a request-response Lambda task\'s TimeoutSeconds unscaled: computing is no faster at a time scale', async () => {
      // 1 s at the time scale 0.01 would be 10 ms: the first call takes 200 ms and succeeds, the second never
      // answers and times out after its whole second.
      let calls = 0;
      const { sfn } = await engine(async ({ signal }) => {
        calls += 1;
        if (calls === 1) return new Promise((resolve) => setTimeout(() => resolve({ took: 200 }), 200));
        return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true }));
      });
      const call = { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', Parameters: { FunctionName: 'fn' }, TimeoutSeconds: 1, End: true };
      const arn = sfn.createStateMachine('lambda-limit', machine({ Call: call }));
      const first = await sfn.startExecution({ stateMachineArn: arn, input: '{}' });
      expect(await sfn.waitForExecution(first.executionArn)).toMatchObject({ status: 'SUCCEEDED' });
      const started = Date.now();
      const second = await sfn.startExecution({ stateMachineArn: arn, input: '{}' });
      expect(await sfn.waitForExecution(second.executionArn)).toMatchObject({ status: 'FAILED', error: 'States.Timeout' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    });

    it('times out with TimeoutSecondsPath read from the state input', async () => {
      const { sfn } = await engine(async () => ({}));
      const { TimeoutSeconds: _ignored, ...task } = tokenTask();
      const arn = sfn.createStateMachine('timeout-path', machine({ Wait: { ...task, TimeoutSecondsPath: '$.limit', End: true } }));
      const started = Date.now();
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, input: '{"who":"a","limit":30}' });
      const done = await sfn.waitForExecution(executionArn);
      expect(done).toMatchObject({ status: 'FAILED', error: 'States.Timeout' });
      expect(Date.now() - started).toBeGreaterThanOrEqual(290);
      const scheduled = sfn.getExecutionHistory(executionArn).find((e) => e.type === 'TaskScheduled');
      expect(scheduled?.taskScheduledEventDetails?.timeoutInSeconds).toBe(30);
    });

    it('re-invokes the router with a new token on Retry, and SendTaskFailure drives Retry', async () => {
      const { router, nextCall } = recordingRouter();
      const { sfn } = await engine(router);
      const arn = sfn.createStateMachine(
        'retry',
        machine({ Wait: { ...tokenTask(), Retry: [{ ErrorEquals: ['Ctd.BackendUnreachable'], IntervalSeconds: 10, MaxAttempts: 5, BackoffRate: 1 }], End: true } }),
      );
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, input: '{"who":"a"}' });
      const first = await nextCall(1);
      sfn.sendTaskFailure(first.taskToken ?? '', 'Ctd.BackendUnreachable', 'no route');
      const second = await nextCall(2);
      expect(second.taskToken).not.toBe(first.taskToken);
      expect(() => sfn.sendTaskSuccess(first.taskToken ?? '', '{}')).toThrowError(expect.objectContaining({ code: 'TaskTimedOut' }));
      sfn.sendTaskSuccess(second.taskToken ?? '', '"ok"');
      expect((await sfn.waitForExecution(executionArn)).status).toBe('SUCCEEDED');
      const types = sfn.getExecutionHistory(executionArn).map((e) => e.type);
      expect(types.filter((t) => t === 'TaskScheduled')).toHaveLength(2);
      expect(types.indexOf('TaskFailed')).toBeLessThan(types.lastIndexOf('TaskScheduled'));
    });
  });

  describe('Method: stopExecution', () => {
    it('aborts the execution and the signal of running router calls, and retires their tokens', async () => {
      const { router, nextCall } = recordingRouter();
      const { sfn } = await engine(router);
      const arn = sfn.createStateMachine('stop', machine({ Wait: { ...tokenTask(), End: true } }));
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, input: '{"who":"a"}' });
      const call = await nextCall(1);
      sfn.stopExecution(executionArn, { error: 'Ctd.Cancelled', cause: 'user asked' });
      expect(call.signal.aborted).toBe(true);
      const done = await sfn.waitForExecution(executionArn);
      expect(done).toMatchObject({ status: 'ABORTED', error: 'Ctd.Cancelled', cause: 'user asked' });
      expect(() => sfn.sendTaskSuccess(call.taskToken ?? '', '{}')).toThrowError(expect.objectContaining({ code: 'TaskTimedOut' }));
      const history = sfn.getExecutionHistory(executionArn);
      expect(history.at(-1)).toMatchObject({ type: 'ExecutionAborted', executionAbortedEventDetails: { error: 'Ctd.Cancelled', cause: 'user asked' } });
    });
  });

  describe('Map states', () => {
    it('routes tasks inside the ItemProcessor and chains each iteration in its own lane', async () => {
      const { router, nextCall } = recordingRouter();
      const { sfn } = await engine(router);
      const arn = sfn.createStateMachine(
        'map',
        machine({
          Each: mapOfTokenTasks(),
        }),
      );
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, input: '{"items":["a","b","c"]}' });
      const calls = [await nextCall(1), await nextCall(2), await nextCall(3)];
      const byWho = new Map(calls.map((c) => [(c.parameters as { Payload: { who: string } }).Payload.who, c]));
      for (const who of ['c', 'a', 'b']) sfn.sendTaskSuccess(byWho.get(who)?.taskToken ?? '', JSON.stringify(who));
      const done = await sfn.waitForExecution(executionArn);
      expect(done.status).toBe('SUCCEEDED');
      expect(JSON.parse(done.output ?? '')).toEqual(['a', 'b', 'c']);

      const history = sfn.getExecutionHistory(executionArn);
      const types = history.map((e) => e.type);
      expect(types.slice(0, 3)).toEqual(['ExecutionStarted', 'MapStateEntered', 'MapStateStarted']);
      expect(history[2]?.mapStateStartedEventDetails).toEqual({ length: 3 });
      expect(types.filter((t) => t === 'MapIterationStarted')).toHaveLength(3);
      expect(types.filter((t) => t === 'MapIterationSucceeded')).toHaveLength(3);
      expect(types.slice(-2)).toEqual(['MapStateExited', 'ExecutionSucceeded']);
      const byId = new Map(history.map((e) => [e.id, e]));
      for (const scheduled of history.filter((e) => e.type === 'TaskScheduled')) {
        const entered = byId.get(scheduled.previousEventId);
        expect(entered?.type).toBe('TaskStateEntered');
        const who = (JSON.parse(scheduled.taskScheduledEventDetails?.parameters ?? '') as { Payload: { who: string } }).Payload.who;
        expect(JSON.parse(entered?.stateEnteredEventDetails?.input ?? '')).toEqual({ who });
        expect(byId.get(entered?.previousEventId)?.type).toBe('MapIterationStarted');
      }
    });
  });

  describe('nested Map states (RunWorkflow over batches, RunBatch over steps)', () => {
    /** Batches of steps; each step waits on a token task, then a Lambda task records it. */
    function batchedMachine(innerConcurrency: number) {
      return machine({
        Batches: {
          Type: 'Map',
          ItemsPath: '$.batches',
          ItemSelector: { 'stepIds.$': '$$.Map.Item.Value' },
          MaxConcurrency: 40,
          ResultPath: null,
          ItemProcessor: {
            ProcessorConfig: { Mode: 'INLINE' },
            StartAt: 'Batch',
            States: {
              Batch: {
                Type: 'Map',
                ItemsPath: '$.stepIds',
                ItemSelector: { 'stepId.$': '$$.Map.Item.Value' },
                MaxConcurrency: innerConcurrency,
                ResultPath: null,
                ItemProcessor: {
                  ProcessorConfig: { Mode: 'INLINE' },
                  StartAt: 'Await',
                  States: {
                    Await: {
                      ...tokenTask(),
                      Parameters: { FunctionName: 'wait', Payload: { 'token.$': '$$.Task.Token', 'who.$': '$.stepId' } },
                      ResultPath: '$.release',
                      Next: 'Record',
                    },
                    Record: { Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke', Parameters: { FunctionName: 'record', 'Payload.$': '$' }, ResultPath: null, TimeoutSeconds: 60, End: true },
                  },
                },
                End: true,
              },
            },
          },
          End: true,
        },
      });
    }

    it('runs every batch with its own concurrency, chains each step in its own lane and names its step in the history', async () => {
      const batches = [['a', 'b', 'c'], ['d', 'e', 'f']];
      const { router, calls, nextCall } = recordingRouter();
      const { sfn } = await engine(router);
      const arn = sfn.createStateMachine('batched', batchedMachine(3));
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, input: JSON.stringify({ batches }) });
      // Six token tasks waiting at once: each batch has its own 3 slots (one Map of 3 would hold 3).
      await nextCall(6);
      const waits = calls.filter((c) => c.stateName === 'Await');
      expect(waits.map((c) => (c.parameters as { Payload: { who: string } }).Payload.who).sort()).toEqual(batches.flat());
      // Answered out of order, across batches.
      for (const who of ['e', 'a', 'f', 'c', 'b', 'd']) {
        const call = waits.find((c) => (c.parameters as { Payload: { who: string } }).Payload.who === who);
        sfn.sendTaskSuccess(call?.taskToken ?? '', '{}');
      }
      expect((await sfn.waitForExecution(executionArn)).status).toBe('SUCCEEDED');

      const history = sfn.getExecutionHistory(executionArn);
      const byId = new Map(history.map((e) => [e.id, e]));
      const stepOf = (e: (typeof history)[number]) => {
        const text = e.stateEnteredEventDetails?.input ?? e.stateExitedEventDetails?.output;
        return text ? (JSON.parse(text) as { stepId?: string }).stepId : undefined;
      };
      for (const [b, batch] of batches.entries()) {
        for (const [index, who] of batch.entries()) {
          // Back from the step's MapIterationSucceeded to its MapIterationStarted: only its own events on the way.
          const done = history.find((e) => e.type === 'MapIterationSucceeded' && e.mapIterationSucceededEventDetails?.name === 'Batch' && stepOf(byId.get(e.previousEventId)!) === who);
          expect(done, who).toBeDefined();
          let event = byId.get(done?.previousEventId);
          const seen: string[] = [];
          while (event && event.type !== 'MapIterationStarted') {
            const type = event.type ?? '';
            if (type.endsWith('StateEntered') || type.endsWith('StateExited')) expect(stepOf(event), `${who}: ${type}`).toBe(who);
            seen.push(type);
            event = byId.get(event.previousEventId);
          }
          expect(seen.filter((t) => t === 'TaskScheduled'), who).toHaveLength(2);
          expect(event?.mapIterationStartedEventDetails, who).toEqual({ name: 'Batch', index });
          // The step's iteration starts from its own batch's Map state, in its batch's lane.
          let parent = byId.get(event?.previousEventId);
          while (parent && parent.type !== 'MapStateEntered') parent = byId.get(parent.previousEventId);
          expect(JSON.parse(parent?.stateEnteredEventDetails?.input ?? '{}'), who).toEqual({ stepIds: batches[b] });
        }
      }
      // core/history.ts names each step's events from this history alone, and none for the batches.
      // As the AWS adapter hands them to core (adapters/aws/sfnExecutions.ts): ISO timestamps.
      const modelEvents = history.map(({ id, previousEventId, timestamp, type, ...rest }) => ({ ...rest, id: id ?? 0, previousEventId, timestamp: timestamp?.toISOString() ?? '', type: type ?? '' }));
      const attributed = attributeEvents(modelEvents, batches.flat());
      for (const who of batches.flat()) {
        const types = attributed.filter((e) => e.stepId === who).map((e) => e.type);
        expect(types.filter((t) => t === 'MapIterationStarted'), who).toHaveLength(1);
        expect(types.filter((t) => t === 'MapIterationSucceeded'), who).toHaveLength(1);
        expect(types.filter((t) => t === 'TaskScheduled'), who).toHaveLength(2);
        expect(types.filter((t) => t === 'TaskSucceeded'), who).toHaveLength(2);
      }
      const mapOf = (e: (typeof attributed)[number]) => (e.mapIterationStartedEventDetails ?? e.mapIterationSucceededEventDetails) as { name?: string } | undefined;
      const batchIterations = attributed.filter((e) => e.type.startsWith('MapIteration') && mapOf(e)?.name === 'Batches');
      expect(batchIterations).toHaveLength(4);
      expect(batchIterations.every((e) => e.stepId === undefined)).toBe(true);
    });
  });

  describe('Parallel states', () => {
    it('chains each branch in its own lane: a task beside a Map never chains to the Map\'s events (OpenBastionAccess beside RunWorkflow)', async () => {
      const { router, nextCall } = recordingRouter();
      const { sfn } = await engine(router);
      const arn = sfn.createStateMachine(
        'parallel',
        machine({
          Both: {
            Type: 'Parallel',
            Branches: [
              { StartAt: 'Open', States: { Open: { ...tokenTask(), End: true } } },
              {
                StartAt: 'Each',
                States: {
                  Each: mapOfTokenTasks(),
                },
              },
            ],
            ResultPath: null,
            End: true,
          },
        }),
      );
      const { executionArn } = await sfn.startExecution({ stateMachineArn: arn, input: '{"who":"open","items":["a","b"]}' });
      const calls = [await nextCall(1), await nextCall(2), await nextCall(3)];
      const byWho = new Map(calls.map((c) => [(c.parameters as { Payload: { who: string } }).Payload.who, c]));
      // The Map's iterations end first, so the Map's own events land between Open's task events.
      for (const who of ['a', 'b', 'open']) {
        sfn.sendTaskSuccess(byWho.get(who)?.taskToken ?? '', JSON.stringify(who));
        await new Promise((r) => setTimeout(r, 50));
      }
      const done = await sfn.waitForExecution(executionArn);
      expect(done.status).toBe('SUCCEEDED');

      const history = sfn.getExecutionHistory(executionArn);
      const byId = new Map(history.map((e) => [e.id, e]));
      const openEntered = history.find((e) => e.type === 'TaskStateEntered' && e.stateEnteredEventDetails?.name === 'Open')!;
      // Open's attempt: every task event chains back to Open's TaskStateEntered through task events only.
      const scheduled = history.filter((e) => e.type === 'TaskScheduled' && byId.get(e.previousEventId)?.id === openEntered.id);
      expect(scheduled).toHaveLength(1);
      const succeeded = history.filter((e) => e.type === 'TaskSucceeded' && e.taskSucceededEventDetails?.output === '"open"');
      expect(succeeded).toHaveLength(1);
      let event = succeeded[0];
      const chain: string[] = [];
      while (event && event.id !== openEntered.id) {
        chain.push(event.type ?? '');
        event = byId.get(event.previousEventId);
      }
      expect(event?.id).toBe(openEntered.id);
      expect(chain.every((type) => type.startsWith('Task'))).toBe(true);
    });
  });

  describe('Persistence', () => {
    it('lists finished executions after a restart and fails the ones that were running', async () => {
      const { router, nextCall } = recordingRouter();
      const { sfn, stateDir } = await engine(router);
      const arn = sfn.createStateMachine('persist', machine({ Wait: { ...tokenTask(), End: true } }));
      const finished = await sfn.startExecution({ stateMachineArn: arn, name: 'finished', input: '{"who":"a"}' });
      sfn.sendTaskSuccess((await nextCall(1)).taskToken ?? '', '{}');
      await sfn.waitForExecution(finished.executionArn);
      const running = await sfn.startExecution({ stateMachineArn: arn, name: 'running', input: '{"who":"b"}' });
      const runningCall = await nextCall(2);
      const historyBefore = sfn.getExecutionHistory(finished.executionArn);
      await sfn.stop();
      expect(runningCall.signal.aborted).toBe(true);

      const orphaned: string[] = [];
      const { sfn: again } = await engine(async () => ({}), {
        stateDir,
        onExecutionOrphaned: async (e) => {
          orphaned.push(e.executionArn);
        },
      });
      expect(orphaned).toEqual([running.executionArn]);
      expect(again.getExecutionHistory(finished.executionArn)).toEqual(historyBefore);
      expect(again.describeExecution(running.executionArn)).toMatchObject({ status: 'FAILED', error: 'Ctd.EngineRestarted' });
      expect(again.getExecutionHistory(running.executionArn).at(-1)?.type).toBe('ExecutionFailed');
      expect(again.listExecutions(arn).map((e) => [e.name, e.status])).toEqual([
        ['running', 'FAILED'],
        ['finished', 'SUCCEEDED'],
      ]);
      expect(again.listExecutions(arn, 'SUCCEEDED')).toHaveLength(1);
    });
  });
});
