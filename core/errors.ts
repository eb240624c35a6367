/**
 * The error table — the single source of truth for how the engine names and handles step faults.
 * The ASL's Retry/Catch blocks, the step runner's classification and the tests all read it.
 * See docs/ARCHITECTURE.md ("The error table").
 */

export const ErrorName = {
  ProvisioningError: 'Ctd.ProvisioningError',
  BackendUnreachable: 'Ctd.BackendUnreachable',
  VmBootstrapTimeout: 'Ctd.VmBootstrapTimeout',
  AnsibleUnreachable: 'Ctd.AnsibleUnreachable',
  StepFailed: 'Ctd.StepFailed',
  SandboxLost: 'Ctd.SandboxLost',
  StepAborted: 'Ctd.StepAborted',
  Cancelled: 'Ctd.Cancelled',
} as const;

export type ErrorName = (typeof ErrorName)[keyof typeof ErrorName];

/**
 * Not a step fault, and not in the table: how a pre-started sandbox lost before its step's release is
 * reported (by the runner when ECS stops it while it waits, else by the STOPPED event). RunStepInSandbox
 * catches it into PrestartFailed, so the step waits for its release and starts a sandbox then, as when
 * ECS cannot start one ahead (core/usecases/prestartFallback.ts). It never becomes a step's error.
 */
export const PRESTART_LOST = 'Ctd.PrestartLost';

export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly intervalSeconds: number;
  readonly backoffRate: number;
}

export interface ErrorPolicy {
  readonly name: ErrorName;
  /** When the runner raises it; shown in docs and in the Cause the user reads. */
  readonly raisedWhen: string;
  /** Retry of the sandbox step by the state machine; absent means fail at once. */
  readonly retry?: RetryPolicy;
}

/** Ordered as the table in DESIGN.md; the ASL lists its Retry entries in this order. */
export const ERROR_TABLE: readonly ErrorPolicy[] = [
  {
    name: ErrorName.ProvisioningError,
    raisedWhen: 'creating or deleting a compute instance, router, floating IP, network, port, security group or rule failed',
    retry: { maxAttempts: 1, intervalSeconds: 5, backoffRate: 1 },
  },
  {
    name: ErrorName.BackendUnreachable,
    raisedWhen: 'the cloud API answered "The backend server is unreachable" (or another 502/503/504, connection refused/reset)',
    retry: { maxAttempts: 5, intervalSeconds: 10, backoffRate: 1 },
  },
  {
    name: ErrorName.VmBootstrapTimeout,
    raisedWhen: 'a created VM is not reachable over SSH through the bastion 180 s after creation',
  },
  {
    name: ErrorName.AnsibleUnreachable,
    raisedWhen: 'ansible-playbook exited 4 and its stats show unreachable hosts',
    retry: { maxAttempts: 1, intervalSeconds: 10, backoffRate: 1 },
  },
  {
    name: ErrorName.StepFailed,
    raisedWhen: 'any other step failure (non-zero exit, playbook failure, lost heartbeat)',
  },
  {
    // Infrastructure, not the user's step: ECS stopped the sandbox before it answered (image pull,
    // out of memory, capacity, a crash of the runner). One more sandbox usually gets through.
    name: ErrorName.SandboxLost,
    raisedWhen: 'ECS stopped the sandbox before it answered (e.g. CannotPullContainerError, OutOfMemoryError, a crashed runner); the Cause carries ECS\'s stoppedReason',
    retry: { maxAttempts: 1, intervalSeconds: 5, backoffRate: 1 },
  },
  {
    name: ErrorName.StepAborted,
    raisedWhen: 'the step was still running when the grace period after another step failure ended',
  },
  {
    name: ErrorName.Cancelled,
    raisedWhen: 'the user cancelled the deployment',
  },
];

/** A created VM must answer over SSH through the bastion within this many seconds. */
export const BOOTSTRAP_LIMIT_SECONDS = 180;
/** Other running steps get this long to finish once one step has failed. */
export const GRACE_PERIOD_SECONDS = 120;
/** The sandbox heartbeats this often; the state machine gives up after HEARTBEAT_TIMEOUT_SECONDS of silence. */
export const HEARTBEAT_INTERVAL_SECONDS = 20;
/**
 * The first heartbeat's clock starts at RunTask, so it must cover a Fargate cold start: 30–60 s
 * from RunTask to RUNNING (AWS re:Post "30–45 s or longer"; wellcomecollection/catalogue-pipeline#3597
 * measured 45–50 s and moved to 5-minute heartbeats), plus the runner's own start. A sandbox that
 * dies or never starts is noticed from ECS's STOPPED event at once (Ctd.SandboxLost), so this bound
 * only catches a runner that hangs alive.
 */
export const HEARTBEAT_TIMEOUT_SECONDS = 300;

export const VM_BOOTSTRAP_HINT =
  'log in to the VM (through the bastion) and check cloud-init: /var/log/cloud-init-output.log and `cloud-init status --long`';

/**
 * A step fault with a name from the error table. The runner reports `name` as the
 * task failure's Error and `message` as its Cause, so the message is written for the user.
 */
export class StepError extends Error {
  constructor(
    readonly errorName: ErrorName,
    message: string,
  ) {
    super(message);
    this.name = errorName;
  }
}

export function isStepError(e: unknown): e is StepError {
  return e instanceof StepError;
}

/** Bad input from a user: the API answers 400 with `message`, which names the field. */
export class ValidationError extends Error {
  override readonly name = 'ValidationError';
  constructor(
    message: string,
    readonly issues: readonly { path: string; message: string }[] = [{ path: '', message }],
  ) {
    super(message);
  }
}

export class NotFoundError extends Error {
  override readonly name = 'NotFoundError';
}

/** A request that conflicts with the deployment's state, e.g. cancelling a finished one. */
export class ConflictError extends Error {
  override readonly name = 'ConflictError';
}

export class UnauthorizedError extends Error {
  override readonly name = 'UnauthorizedError';
}

/** A task token that the state machine no longer waits on (already answered, timed out, execution stopped). */
export class TaskTokenGoneError extends Error {
  override readonly name = 'TaskTokenGoneError';
}
