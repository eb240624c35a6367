/**
 * The local Step Functions service: runs our ASL on `aws-local-stepfunctions` with AWS semantics
 * (see task.ts for Task attempts), keeps AWS-shaped execution records and histories on disk, and
 * answers the Step Functions API operations the engine uses (server.ts puts them on the wire).
 */
import { randomUUID } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import type { Server } from 'node:http';
import type { ExecutionStatus } from '@aws-sdk/client-sfn';
import { ExecutionAbortedError, ExecutionError, StateMachine, type LibraryEvent, type LibraryJson, type StateMachineDefinition } from './library.ts';
import { parseDefinition, type ParsedDefinition } from './definition.ts';
import { ExecutionStoppedError, SfnError } from './errors.ts';
import { causeText, ExecutionHistory, laneOf, recordStateEvent, ROOT_LANE } from './history.ts';
import { AttemptEntries, attemptKey } from './attempts.ts';
import { ExecutionStore, type ExecutionRecord, type StateMachineRecord } from './store.ts';
import { runTaskAttempt, type TaskAttemptContext } from './task.ts';
import { TaskTokens } from './tokens.ts';
import { createSfnServer } from './server.ts';
import type {
  ExecutionDescription,
  ExecutionListItem,
  ExecutionStatusChangeDetail,
  LocalStepFunctionsOptions,
  OrphanedExecution,
  StateMachineDescription,
  TaskRouter,
} from './types.ts';

export const ENGINE_RESTARTED = 'Ctd.EngineRestarted';
/** The statuses the AWS safety-net rule matches (cdk/engine.ts). */
const ENDED_OUTSIDE_SUCCESS = new Set<ExecutionStatus>(['FAILED', 'TIMED_OUT', 'ABORTED']);
const DELIVERY_ATTEMPTS = 3;
const NAME_PATTERN = /^[A-Za-z0-9_-]{1,80}$/;

interface LoadedMachine {
  record: StateMachineRecord;
  parsed: ParsedDefinition;
  engine: StateMachine;
}

interface Execution {
  record: ExecutionRecord;
  history: ExecutionHistory;
  done: Promise<void>;
  markDone: () => void;
  /** Set once the engine stops: the execution stays RUNNING on disk and is orphaned at next start. */
  detached: boolean;
  /** Set once its final event is written: as in AWS, nothing is added to an ended execution's history. */
  closed?: boolean;
  controller?: AbortController;
  entries?: AttemptEntries;
  abortRun?: () => void;
  settled?: Promise<unknown>;
}

export class LocalStepFunctions {
  private readonly router: TaskRouter;
  private readonly timeScale: number;
  private readonly region: string;
  private readonly accountId: string;
  private readonly onExecutionOrphaned?: (execution: OrphanedExecution) => Promise<void>;
  private readonly onExecutionEnded?: (detail: ExecutionStatusChangeDetail) => Promise<void>;
  private readonly executionTimeoutSeconds?: number;
  /** Status-change deliveries in flight; stop() waits for them. */
  private readonly deliveries = new Set<Promise<void>>();
  private readonly store: ExecutionStore;
  private readonly tokens = new TaskTokens();
  private readonly machines = new Map<string, LoadedMachine>();
  private readonly executions = new Map<string, Execution>();
  private server?: Server;
  private started = false;

  constructor(options: LocalStepFunctionsOptions) {
    this.router = options.router;
    this.timeScale = options.timeScale ?? 1;
    this.region = options.region ?? 'us-east-1';
    this.accountId = options.accountId ?? '000000000000';
    this.onExecutionOrphaned = options.onExecutionOrphaned;
    this.onExecutionEnded = options.onExecutionEnded;
    this.executionTimeoutSeconds = options.executionTimeoutSeconds;
    this.store = new ExecutionStore(options.stateDir);
  }

  /** Loads state machines and executions; executions left RUNNING by a dead engine are failed. */
  async start(): Promise<void> {
    if (this.started) return;
    for (const record of this.store.loadStateMachines()) this.loadMachine(record, false);
    const orphans: OrphanedExecution[] = [];
    for (const { record, events } of this.store.loadExecutions()) {
      const execution = this.track(record, events);
      if (record.status !== 'RUNNING') continue;
      this.finish(execution, 'FAILED', {
        error: ENGINE_RESTARTED,
        cause: 'The local Step Functions engine stopped while this execution was running; its tasks were abandoned and it was marked failed at the next start.',
      });
      orphans.push({ executionArn: record.executionArn, name: record.name, input: JSON.parse(record.input) as unknown });
    }
    this.started = true;
    for (const orphan of orphans) await this.onExecutionOrphaned?.(orphan);
  }

  /**
   * Delivers the status change of every execution that ended FAILED, TIMED_OUT or ABORTED (those
   * orphaned by `start()` included) once more: one that ended while the engine was down, or whose
   * delivery died with it, is heard now. Call once the API listens; the handler must be idempotent.
   */
  async sweepEndedExecutions(): Promise<number> {
    const ended = [...this.executions.values()].filter(({ record }) => ENDED_OUTSIDE_SUCCESS.has(record.status));
    for (const execution of ended) await this.deliver(execution.record);
    return ended.length;
  }

  /** Stops the HTTP server and every running execution, killing their router calls (signals abort). */
  async stop(): Promise<void> {
    this.started = false;
    const running = [...this.executions.values()].filter((execution) => execution.record.status === 'RUNNING');
    for (const execution of running) {
      execution.detached = true;
      execution.controller?.abort(new ExecutionStoppedError());
      execution.entries?.rejectAll(new ExecutionStoppedError());
      execution.abortRun?.();
    }
    this.tokens.retireAll();
    await Promise.allSettled(running.map((execution) => execution.settled));
    await Promise.allSettled([...this.deliveries]);
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  /** Serves the AWS JSON 1.0 protocol (`X-Amz-Target: AWSStepFunctions.<Op>`). */
  async listen(port: number, host = '127.0.0.1'): Promise<{ url: string }> {
    const server = createSfnServer(this);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve());
    });
    this.server = server;
    const address = server.address();
    const actualPort = typeof address === 'object' && address ? address.port : port;
    return { url: `http://${host}:${actualPort}` };
  }

  /** Validates with asl-validator and registers (or replaces) a state machine; returns its ARN. */
  createStateMachine(name: string, definition: string): string {
    if (!NAME_PATTERN.test(name)) throw new SfnError('InvalidName', `Invalid Name: '${name}'`);
    const record: StateMachineRecord = {
      stateMachineArn: `arn:aws:states:${this.region}:${this.accountId}:stateMachine:${name}`,
      name,
      definition,
      creationDate: new Date().toISOString(),
    };
    this.loadMachine(record);
    this.store.saveStateMachine(record);
    return record.stateMachineArn;
  }

  describeStateMachine(stateMachineArn: string): StateMachineDescription {
    const { record } = this.machine(stateMachineArn);
    return { stateMachineArn: record.stateMachineArn, name: record.name, definition: record.definition, creationDate: new Date(record.creationDate) };
  }

  listStateMachines(): StateMachineDescription[] {
    return [...this.machines.values()].map(({ record }) => this.describeStateMachine(record.stateMachineArn));
  }

  async startExecution(request: { stateMachineArn: string; name?: string; input?: string }): Promise<{ executionArn: string; startDate: Date }> {
    this.assertStarted();
    const machine = this.machine(request.stateMachineArn);
    const name = request.name ?? randomUUID();
    if (!NAME_PATTERN.test(name)) throw new SfnError('InvalidName', `Invalid Name: '${name}'`);
    const inputText = request.input ?? '{}';
    let input: unknown;
    try {
      input = JSON.parse(inputText);
    } catch {
      throw new SfnError('InvalidExecutionInput', 'Invalid execution input: the input must be valid JSON');
    }
    const executionArn = `arn:aws:states:${this.region}:${this.accountId}:execution:${machine.record.name}:${name}`;
    const existing = this.executions.get(executionArn);
    if (existing) {
      // AWS: the same name and input while still running is an idempotent retry of the request.
      if (existing.record.status === 'RUNNING' && existing.record.input === inputText) {
        return { executionArn, startDate: new Date(existing.record.startDate) };
      }
      throw new SfnError('ExecutionAlreadyExists', `Execution Already Exists: '${executionArn}'`);
    }

    const record: ExecutionRecord = {
      executionArn,
      stateMachineArn: machine.record.stateMachineArn,
      name,
      status: 'RUNNING',
      startDate: new Date().toISOString(),
      input: inputText,
    };
    this.store.saveExecution(record);
    const execution = this.track(record, []);
    execution.history.add(
      {
        type: 'ExecutionStarted',
        executionStartedEventDetails: { input: inputText, inputDetails: { truncated: false }, roleArn: this.roleArn() },
      },
      ROOT_LANE,
      0,
    );
    this.run(execution, machine, input);
    return { executionArn, startDate: new Date(record.startDate) };
  }

  describeExecution(executionArn: string): ExecutionDescription {
    const { record } = this.execution(executionArn);
    return {
      ...listItemOf(record),
      input: record.input,
      ...(record.output !== undefined ? { output: record.output } : {}),
      ...(record.error !== undefined ? { error: record.error } : {}),
      ...(record.cause !== undefined ? { cause: record.cause } : {}),
    };
  }

  /** Newest first, like AWS. */
  listExecutions(stateMachineArn: string, statusFilter?: ExecutionStatus): ExecutionListItem[] {
    this.machine(stateMachineArn);
    return [...this.executions.values()]
      .map(({ record }) => record)
      .filter((record) => record.stateMachineArn === stateMachineArn && (!statusFilter || record.status === statusFilter))
      .sort((a, b) => b.startDate.localeCompare(a.startDate))
      .map(listItemOf);
  }

  getExecutionHistory(executionArn: string): ReturnType<ExecutionHistory['snapshot']> {
    return this.execution(executionArn).history.snapshot();
  }

  /** Aborts the execution: ExecutionAborted, every router signal aborted, its task tokens retired. */
  stopExecution(executionArn: string, reason: { error?: string; cause?: string } = {}): { stopDate: Date } {
    const execution = this.execution(executionArn);
    if (execution.record.status === 'RUNNING') {
      this.finish(execution, 'ABORTED', reason);
      execution.controller?.abort(new ExecutionStoppedError());
      execution.entries?.rejectAll(new ExecutionStoppedError());
      execution.abortRun?.();
    }
    return { stopDate: new Date(execution.record.stopDate ?? Date.now()) };
  }

  sendTaskSuccess(taskToken: string, output: string): void {
    this.tokens.sendSuccess(taskToken, output);
  }

  sendTaskFailure(taskToken: string, error?: string, cause?: string): void {
    this.tokens.sendFailure(taskToken, error ?? '', cause ?? '');
  }

  sendTaskHeartbeat(taskToken: string): void {
    this.tokens.sendHeartbeat(taskToken);
  }

  /** Resolves with the description once the execution is no longer RUNNING (tests, demo). */
  async waitForExecution(executionArn: string): Promise<ExecutionDescription> {
    await this.execution(executionArn).done;
    return this.describeExecution(executionArn);
  }

  private run(execution: Execution, machine: LoadedMachine, input: unknown): void {
    const { record } = execution;
    const controller = new AbortController();
    // Every running task of the execution listens on this signal (a Map runs up to 40 at once).
    setMaxListeners(0, controller.signal);
    const entries = new AttemptEntries();
    const tokenPlaceholder = `ctd-task-token-placeholder-${randomUUID()}`;
    const context: TaskAttemptContext = {
      executionArn: record.executionArn,
      region: this.region,
      timeScale: this.timeScale,
      tokenPlaceholder,
      executionSignal: controller.signal,
      history: execution.history,
      entries,
      tokens: this.tokens,
      router: this.router,
    };
    const handlers = Object.fromEntries(
      [...machine.parsed.tasks.values()].map((info) => [info.name, (value: LibraryJson) => runTaskAttempt(context, info, value) as Promise<LibraryJson>]),
    );
    const run = machine.engine.run(input as LibraryJson, {
      overrides: { taskResourceLocalHandlers: handlers },
      context: {
        Execution: { Id: record.executionArn, Name: record.name, RoleArn: this.roleArn() },
        StateMachine: { Id: machine.record.stateMachineArn, Name: machine.record.name },
        Task: { Token: tokenPlaceholder },
      },
    });
    execution.controller = controller;
    execution.entries = entries;
    execution.abortRun = run.abort;

    const consumed = (async () => {
      for await (const event of run.eventLogs) {
        if (execution.record.status !== 'RUNNING' || execution.detached) continue;
        this.onLibraryEvent(execution, machine, entries, event);
      }
    })();
    execution.settled = run.result.then(
      async (output) => {
        await settleSoon(consumed);
        this.finish(execution, 'SUCCEEDED', { output: JSON.stringify(output ?? null) });
      },
      async (error: unknown) => {
        await settleSoon(consumed);
        if (error instanceof ExecutionAbortedError) return;
        if (error instanceof ExecutionError && error.cause instanceof Error) {
          this.finish(execution, 'FAILED', { error: error.cause.name, cause: causeText(error.cause.message) });
        } else if (error instanceof Error && error.name === 'ExecutionTimeoutError') {
          this.finish(execution, 'TIMED_OUT', { error: 'States.Timeout', cause: 'The execution exceeded its TimeoutSeconds' });
        } else {
          this.finish(execution, 'FAILED', { error: 'States.Runtime', cause: String(error) });
        }
        // As in AWS: an ended execution's running tasks end with it (their routers see the signal). A failure can
        // leave tasks of other branches running in the library; their timers must not outlive the execution.
        controller.abort(new ExecutionStoppedError());
        entries.rejectAll(new ExecutionStoppedError());
      },
    );
  }

  private onLibraryEvent(execution: Execution, machine: LoadedMachine, entries: AttemptEntries, event: LibraryEvent): void {
    const isTaskAttempt = (event.type === 'StateEntered' || event.type === 'StateRetried') && event.state.type === 'Task';
    if (!isTaskAttempt) {
      recordStateEvent(execution.history, event, machine.parsed);
      return;
    }
    const lane = laneOf(event, machine.parsed);
    const previousEventId =
      event.type === 'StateEntered'
        ? (recordStateEvent(execution.history, event, machine.parsed) ?? execution.history.lastOf(lane))
        : execution.history.lastOf(lane);
    const info = machine.parsed.tasks.get(event.state.name);
    entries.arrive(event.state.name, attemptKey(event.state.input, info?.hasInputPath ?? false), { lane, previousEventId });
  }

  /** Moves a RUNNING execution to its final status with the matching history event; idempotent. */
  private finish(execution: Execution, status: ExecutionStatus, fields: { output?: string; error?: string; cause?: string }): void {
    const { record } = execution;
    if (record.status !== 'RUNNING' || execution.detached) return;
    record.status = status;
    record.stopDate = new Date().toISOString();
    if (fields.output !== undefined) record.output = fields.output;
    if (fields.error !== undefined) record.error = fields.error;
    if (fields.cause !== undefined) record.cause = fields.cause;
    const details = { ...(fields.error !== undefined ? { error: fields.error } : {}), ...(fields.cause !== undefined ? { cause: fields.cause } : {}) };
    if (status === 'SUCCEEDED') {
      execution.history.add({ type: 'ExecutionSucceeded', executionSucceededEventDetails: { output: fields.output, outputDetails: { truncated: false } } });
    } else if (status === 'ABORTED') {
      execution.history.add({ type: 'ExecutionAborted', executionAbortedEventDetails: details });
    } else if (status === 'TIMED_OUT') {
      execution.history.add({ type: 'ExecutionTimedOut', executionTimedOutEventDetails: details });
    } else {
      execution.history.add({ type: 'ExecutionFailed', executionFailedEventDetails: details });
    }
    execution.closed = true;
    this.store.saveExecution(record);
    this.tokens.retireExecution(record.executionArn);
    execution.markDone();
    // Orphans failed by start() are delivered by sweepEndedExecutions(), once someone listens.
    if (this.started && ENDED_OUTSIDE_SUCCESS.has(status)) {
      const delivery = this.deliver(record).finally(() => this.deliveries.delete(delivery));
      this.deliveries.add(delivery);
    }
  }

  /** At-least-once, like EventBridge's retrying target: a few tries, then the next sweep. */
  private async deliver(record: ExecutionRecord): Promise<void> {
    if (!this.onExecutionEnded) return;
    const detail: ExecutionStatusChangeDetail = {
      executionArn: record.executionArn,
      stateMachineArn: record.stateMachineArn,
      name: record.name,
      status: record.status,
      startDate: Date.parse(record.startDate),
      stopDate: record.stopDate ? Date.parse(record.stopDate) : null,
      input: record.input,
      output: record.output ?? null,
      error: record.error ?? null,
      cause: record.cause ?? null,
    };
    for (let attempt = 1; ; attempt++) {
      try {
        await this.onExecutionEnded(detail);
        return;
      } catch (error) {
        if (attempt >= DELIVERY_ATTEMPTS) {
          process.emitWarning(`the status change of ${record.executionArn} was not delivered: ${String(error)}`);
          return;
        }
        await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
      }
    }
  }

  private track(record: ExecutionRecord, events: ReturnType<ExecutionHistory['snapshot']>): Execution {
    let markDone!: () => void;
    const done = new Promise<void>((resolve) => (markDone = resolve));
    const execution: Execution = {
      record,
      done,
      markDone,
      detached: false,
      history: new ExecutionHistory((event) => {
        if (!execution.detached && !execution.closed) this.store.appendEvent(record.executionArn, event);
      }, events),
    };
    if (record.status !== 'RUNNING') markDone();
    this.executions.set(record.executionArn, execution);
    return execution;
  }

  private loadMachine(record: StateMachineRecord, validate = true): void {
    const parsed = parseDefinition(record.definition, this.timeScale, validate, this.executionTimeoutSeconds);
    const engine = new StateMachine(parsed.engine as unknown as StateMachineDefinition, { validationOptions: { noValidate: true } });
    this.machines.set(record.stateMachineArn, { record, parsed, engine });
  }

  private machine(stateMachineArn: string): LoadedMachine {
    const machine = this.machines.get(stateMachineArn);
    if (!machine) throw new SfnError('StateMachineDoesNotExist', `State Machine Does Not Exist: '${stateMachineArn}'`);
    return machine;
  }

  private execution(executionArn: string): Execution {
    const execution = this.executions.get(executionArn);
    if (!execution) throw new SfnError('ExecutionDoesNotExist', `Execution Does Not Exist: '${executionArn}'`);
    return execution;
  }

  private assertStarted(): void {
    if (!this.started) throw new Error('LocalStepFunctions is not started: call start() first');
  }

  private roleArn(): string {
    return `arn:aws:iam::${this.accountId}:role/ctd-local-state-machine`;
  }
}

/**
 * Waits for the event stream to drain before the terminal event is written, but never hangs on it:
 * nested Map events reach the root stream asynchronously and may still be in flight.
 */
async function settleSoon(stream: Promise<void>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([stream.catch(() => undefined), new Promise<void>((resolve) => (timer = setTimeout(resolve, 1000)))]);
  clearTimeout(timer);
}

function listItemOf(record: ExecutionRecord): ExecutionListItem {
  return {
    executionArn: record.executionArn,
    stateMachineArn: record.stateMachineArn,
    name: record.name,
    status: record.status,
    startDate: new Date(record.startDate),
    ...(record.stopDate ? { stopDate: new Date(record.stopDate) } : {}),
  };
}
