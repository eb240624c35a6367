import type { AttributedEvent, StepTimeline } from './history.ts';
import type { DeploymentStatus, StepLogLine, StepStatus } from './model.ts';

/**
 * The HTTP API's response bodies — the contract the CLI, the docs and the tests share.
 * Requests carry `Authorization: Bearer <cloud token>`; POST /deployments may carry `Idempotency-Key`.
 */

export interface SubmitResponse {
  deploymentId: string;
  executionArn: string;
  consoleUrl: string;
  status: DeploymentStatus;
}

export interface DeploymentSummary {
  deploymentId: string;
  name: string;
  status: DeploymentStatus;
  createdAt: string;
  updatedAt: string;
  endedAt?: string;
  error?: string;
  cause?: string;
}

export interface StepView {
  stepId: string;
  action: string;
  system: boolean;
  status: StepStatus;
  attempt: number;
  dependsOn: string[];
  startedAt?: string;
  endedAt?: string;
  error?: string;
  cause?: string;
  /** Why ECS stopped the step's last lost sandbox, even when a retry then succeeded. */
  stopReason?: string;
  /** When the step's sandbox was started ahead of its release (pre-start). */
  prestartedAt?: string;
  /** A sandbox started ahead of the step was up and waiting for its release from here (pre-start). */
  readyAt?: string;
  /**
   * A sandbox started ahead of the step did not serve it (ECS refused or lost it, or it waited past its idle limit):
   * why, in ECS's or the runner's words. The step then starts a sandbox at its release.
   */
  prestartFailure?: string;
  prestartFailedAt?: string;
  /** How long that sandbox had waited for the release, when it was up: part of the deployment's `idleSandboxSeconds`. */
  prestartIdleSeconds?: number;
  output?: Record<string, unknown>;
}

export interface DeploymentView extends DeploymentSummary {
  executionArn?: string;
  consoleUrl?: string;
  /** When the first step failure started the grace period for steps still running. */
  graceStartedAt?: string;
  /** When the user cancelled. */
  cancelledAt?: string;
  /** Σ seconds sandboxes started ahead of their step waited for its release (the cost of hiding cold starts). */
  idleSandboxSeconds?: number;
  /** Why this deployment stopped starting sandboxes ahead: ECS refused one of its sandboxes (no Fargate capacity, the vCPU quota). Its steps then start at their release. */
  prestartHalted?: string;
  /** System steps first (bastion-open), then the workflow in topological order, bastion-close last. */
  steps: StepView[];
}

export interface ListResponse {
  items: DeploymentSummary[];
  nextCursor?: string;
}

export interface HistoryResponse {
  /** Step Functions events, each with the workflow step it belongs to (none for engine-level events). */
  events: AttributedEvent[];
  /** Per step, read from those events: dependency wait, sandbox attempts (retries apart), grace period. */
  steps: StepTimeline[];
}

export interface LogsResponse {
  lines: StepLogLine[];
}

export interface CancelResponse {
  deploymentId: string;
  status: DeploymentStatus;
}

/** Every 4xx/5xx body. `issues` lists each invalid field for a 400. */
export interface ErrorResponse {
  message: string;
  issues?: { path: string; message: string }[];
}

/** What became of a step whose sandbox started ahead did not serve it (`prestartFailure`), by its status: the CLI's and the console's words. */
export function prestartFallbackOutcome(status: StepStatus): string {
  if (status === 'waiting') return 'it starts a sandbox at its release';
  if (status === 'skipped' || status === 'cancelled') return `it was ${status} before its release`;
  return 'it started a sandbox at its release';
}
