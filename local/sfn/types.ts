/** Public types of the local Step Functions runtime. */
import type { ExecutionStatus, HistoryEvent } from '@aws-sdk/client-sfn';

/** One Task attempt handed to the router. */
export interface TaskInvocation {
  /** The Task's Resource ARN, e.g. `arn:aws:states:::ecs:runTask.waitForTaskToken`. */
  resource: string;
  /** Resolved Parameters, with `$$.Task.Token` replaced by this attempt's token. */
  parameters: unknown;
  /** Set for `.waitForTaskToken` resources: complete the task with SendTaskSuccess/Failure. */
  taskToken?: string;
  executionArn: string;
  stateName: string;
  /** Aborted when the execution is stopped, the task times out, or the engine stops. */
  signal: AbortSignal;
}

/**
 * Runs a Task attempt. For request-response resources the result is the service's response (for
 * `lambda:invoke`, the function's return value: the runtime wraps it in Lambda's envelope). For
 * `.waitForTaskToken` resources it returns once the work is submitted. Throw an Error whose `name`
 * is the ASL error name to fail the task.
 */
export type TaskRouter = (invocation: TaskInvocation) => Promise<unknown>;

export interface OrphanedExecution {
  executionArn: string;
  name: string;
  input: unknown;
}

export interface LocalStepFunctionsOptions {
  /** Executions and their history are persisted here as JSON and survive restarts. */
  stateDir: string;
  router: TaskRouter;
  /** Multiplies TimeoutSeconds, HeartbeatSeconds, Wait Seconds and Retry intervals (tests: 0.01). */
  timeScale?: number;
  region?: string;
  accountId?: string;
  /** Called by `start()` for executions that were RUNNING when the previous engine stopped. */
  onExecutionOrphaned?: (execution: OrphanedExecution) => Promise<void>;
  /**
   * EventBridge's "Step Functions Execution Status Change" for FAILED, TIMED_OUT and ABORTED, as the
   * AWS rule delivers it to the safety net: called when an execution ends so, retried on error,
   * and again by `sweepEndedExecutions()` for those that ended while nobody could hear it.
   */
  onExecutionEnded?: (detail: ExecutionStatusChangeDetail) => Promise<void>;
  /**
   * Tests: the execution-level TimeoutSeconds, in real seconds (not scaled), in place of the
   * definition's own (an execution bound of days cannot be reached under any useful time scale).
   */
  executionTimeoutSeconds?: number;
}

/** The `detail` of an EventBridge "Step Functions Execution Status Change" event (dates in epoch ms). */
export interface ExecutionStatusChangeDetail {
  executionArn: string;
  stateMachineArn: string;
  name: string;
  status: ExecutionStatus;
  startDate: number;
  stopDate: number | null;
  input: string;
  output: string | null;
  error: string | null;
  cause: string | null;
}

export interface ExecutionDescription {
  executionArn: string;
  stateMachineArn: string;
  name: string;
  status: ExecutionStatus;
  startDate: Date;
  stopDate?: Date;
  input: string;
  output?: string;
  error?: string;
  cause?: string;
}

export interface ExecutionListItem {
  executionArn: string;
  stateMachineArn: string;
  name: string;
  status: ExecutionStatus;
  startDate: Date;
  stopDate?: Date;
}

export interface StateMachineDescription {
  stateMachineArn: string;
  name: string;
  definition: string;
  creationDate: Date;
}

/**
 * The operations the wire protocol (server.ts) serves; LocalStepFunctions provides them. Declared here
 * so that server.ts does not import runtime.ts, which starts the server (an import cycle).
 */
export interface StepFunctionsOperations {
  createStateMachine(name: string, definition: string): string;
  describeStateMachine(stateMachineArn: string): StateMachineDescription;
  listStateMachines(): StateMachineDescription[];
  startExecution(request: { stateMachineArn: string; name?: string; input?: string }): Promise<{ executionArn: string; startDate: Date }>;
  describeExecution(executionArn: string): ExecutionDescription;
  listExecutions(stateMachineArn: string, statusFilter?: ExecutionStatus): ExecutionListItem[];
  getExecutionHistory(executionArn: string): HistoryEvent[];
  stopExecution(executionArn: string, reason?: { error?: string; cause?: string }): { stopDate: Date };
  sendTaskSuccess(taskToken: string, output: string): void;
  sendTaskFailure(taskToken: string, error?: string, cause?: string): void;
  sendTaskHeartbeat(taskToken: string): void;
}
