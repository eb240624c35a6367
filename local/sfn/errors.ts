/**
 * Errors of the Step Functions API, named exactly like AWS's `__type` codes so the AWS SDK (and the
 * server) can surface them unchanged.
 */
export type SfnErrorCode =
  | 'ExecutionAlreadyExists'
  | 'ExecutionDoesNotExist'
  | 'StateMachineDoesNotExist'
  | 'InvalidArn'
  | 'InvalidDefinition'
  | 'InvalidExecutionInput'
  | 'InvalidName'
  | 'InvalidOutput'
  | 'InvalidToken'
  | 'TaskDoesNotExist'
  | 'TaskTimedOut'
  | 'ValidationException'
  | 'UnknownOperationException';

export class SfnError extends Error {
  constructor(
    readonly code: SfnErrorCode,
    message: string,
  ) {
    super(message);
    this.name = code;
  }
}

/**
 * The error a Task attempt throws into the interpreter. Its `name` is the ASL error name that Retry
 * and Catch match, its `message` becomes the `Cause` (the library copies `message` into Cause).
 */
export class TaskError extends Error {
  constructor(error: string, cause: string) {
    super(cause);
    this.name = error;
  }
}

/**
 * Thrown into the interpreter when the execution was stopped or the engine is shutting down.
 * `isRetryable`/`isCatchable` are the library's duck-typed flags: neither Retry nor Catch may keep a
 * stopped execution alive.
 */
export class ExecutionStoppedError extends Error {
  readonly isRetryable = false;
  readonly isCatchable = false;
  constructor() {
    super('Execution stopped');
    this.name = 'Ctd.ExecutionStopped';
  }
}
