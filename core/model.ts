import type { StepSpec, SystemStepId, Topology } from './deployment/schema.ts';

/**
 * What the engine stores about a deployment and its steps. One name per concept:
 * these words are the DynamoDB attributes, the API fields and the CLI columns.
 */

export type DeploymentStatus = 'PENDING' | 'RUNNING' | 'CANCELLING' | 'SUCCEEDED' | 'FAILED' | 'CANCELLED';
export const FINAL_DEPLOYMENT_STATUSES: readonly DeploymentStatus[] = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

/**
 * waiting: not yet released; running: released to its sandbox (retries included);
 * skipped: never ran (a dependency failed, or the deployment was failing or cancelled);
 * aborted: still running when the grace period ended; cancelled: stopped by the user.
 */
export type StepStatus = 'waiting' | 'running' | 'succeeded' | 'failed' | 'skipped' | 'aborted' | 'cancelled';

export interface DeploymentRecord {
  deploymentId: string;
  tenantId: string;
  name: string;
  status: DeploymentStatus;
  createdAt: string;
  updatedAt: string;
  endedAt?: string;
  /** Workflow step ids in topological order (system steps excluded). */
  stepIds: string[];
  topology: Topology;
  executionArn?: string;
  consoleUrl?: string;
  idempotencyKey?: string;
  /** Set on the first step failure; the grace period runs once per deployment. */
  graceStartedAt?: string;
  /** When the user cancelled (the status moves on to CANCELLED once Cleanup ran). */
  cancelledAt?: string;
  /** Σ seconds pre-started sandboxes waited for their release (Fargate paid, no work done); set by Summarize. */
  idleSandboxSeconds?: number;
  /**
   * Pre-start claims taken (core/usecases/release.ts): one per sandbox started ahead of its release, added
   * before its step is marked, so the cap holds however many Lambdas decide at once.
   */
  prestartClaims?: number;
  /**
   * Why this deployment starts no more sandboxes ahead (core/usecases/prestartFallback.ts): ECS refused one of
   * its RunTasks for good, ahead of a release or at one (no Fargate capacity, the account's vCPU quota). Its
   * waiting sandboxes give their places back, so from here on every step starts its sandbox at its release.
   */
  prestartHalted?: string;
  /** Seconds each step took in the tenant's last run of this deployment's name, by step id (pre-start's lookahead). */
  expectedStepSeconds?: Record<string, number>;
  /** The GracePeriod state's task token while it waits. */
  graceToken?: string;
  /** Why the deployment failed: the root cause, not the steps aborted or skipped after it. */
  error?: string;
  cause?: string;
}

export interface StepRecord {
  deploymentId: string;
  stepId: string;
  /** System steps (bastion-open, bastion-close) are run by the engine around the workflow. */
  system: boolean;
  spec: StepSpec | SystemStepSpec;
  dependsOn: string[];
  status: StepStatus;
  /** 1 for the first sandbox run, counting retries by the state machine. */
  attempt: number;
  startedAt?: string;
  endedAt?: string;
  error?: string;
  cause?: string;
  /** AwaitDependencies' task token while the step waits for its dependencies. */
  awaitToken?: string;
  /** When AwaitDependencies let the step's sandbox start ahead of its release (pre-start, issue 12). */
  prestartedAt?: string;
  /** When a pre-started sandbox was up and began waiting for the release: its idle time starts here. */
  readyAt?: string;
  /**
   * Seconds a pre-started sandbox waited before it was given up ahead of the release (lost, or past its
   * idle limit); its `readyAt` goes with it, this keeps its idle time in the deployment's figure.
   */
  prestartIdleSeconds?: number;
  /** When a sandbox started at the step's release (its last attempt's) was up and claimed it: the step's run starts here. */
  claimedAt?: string;
  /**
   * When the RunTask of the pre-started sandbox failed for good (ECS faults after the retries): the step then
   * waits for its real release and starts a sandbox as without pre-start. `prestartedAt` stays (never removed).
   */
  prestartFailedAt?: string;
  /** ECS's error and cause for that failed pre-start, for the user. */
  prestartFailure?: string;
  /** When the deployment's pre-start halted while this step's sandbox waited: the sandbox gives its place back at its next poll. */
  prestartHaltedAt?: string;
  /** How many times MakeRoom started this released step again after ECS refused its sandbox (core/usecases/prestartFallback.ts). */
  makeRoomRounds?: number;
  /** The sandbox's task token and task id while it runs. */
  taskToken?: string;
  taskArn?: string;
  /** Why ECS stopped this step's last lost sandbox (its stoppedReason), kept even when a retry succeeded. */
  stopReason?: string;
  /** What the step's action returned (addresses of created VMs, for example). */
  output?: Record<string, unknown>;
}

export interface SystemStepSpec {
  id: SystemStepId;
  action: SystemStepId;
  dependsOn: [];
  timeoutSeconds?: number;
}

/** Encrypted secrets of one deployment; deleted when it ends. */
export interface SecretsRecord {
  /** The user's cloud token, KMS-encrypted with context {deploymentId, tenantId}; base64. */
  tokenCiphertext: string;
  /** The deployment's ed25519 private key (OpenSSH format) sealed under HKDF(token); see core/crypto/sshKey.ts. */
  sshPrivateKeySealed: string;
  sshPublicKey: string;
  /** Epoch seconds after which DynamoDB TTL removes the items should every other clean-up fail. */
  expiresAt: number;
}

export interface StepLogLine {
  stepId: string;
  attempt: number;
  /** Monotonic within (step, attempt). */
  seq: number;
  at: string;
  stream: 'stdout' | 'stderr' | 'engine';
  /** The VM the line came from, for ssh and ansible steps. */
  host?: string;
  text: string;
}

export interface HistoryEvent {
  id: number;
  previousEventId?: number;
  timestamp: string;
  type: string;
  [details: string]: unknown;
}
