/**
 * The engine's own metrics: one name per concept, the same in code, the dashboard, the alarms and
 * the docs. core/ emits through {@link MetricsPort}; the AWS adapter writes them as CloudWatch EMF
 * (Powertools Metrics), local mode routes the same EMF lines into the engine's log.
 */

export const Metric = {
  /** An execution was started for an accepted deployment (not counted again on an Idempotency-Key replay). */
  DeploymentsStarted: 'DeploymentsStarted',
  DeploymentsSucceeded: 'DeploymentsSucceeded',
  /** Includes Ctd.CleanupFailed and executions that ended outside Cleanup (safety net). */
  DeploymentsFailed: 'DeploymentsFailed',
  DeploymentsCancelled: 'DeploymentsCancelled',
  /** One sandbox attempt of a step, from the action's start to its outcome; dimension Action. */
  StepDuration: 'StepDuration',
  /** A step attempt failed with an error the state machine retries (the error table); dimension ErrorName. */
  RetryableFailures: 'RetryableFailures',
  /** From the step's release (RunTask) to its runner starting the attempt: Fargate's cold start. */
  SandboxStartLatency: 'SandboxStartLatency',
  /** A deployment ended while its bastion rule may still be open (bastion-close failed: Ctd.CleanupFailed). */
  BastionRulesOpenAfterDeployment: 'BastionRulesOpenAfterDeployment',
  /**
   * RunTask still failed after the state machine's jittered retries (ECS or EC2 throttling, capacity,
   * vCPU quota): a step never got its sandbox. ECS publishes no throttle metric of its own.
   */
  SandboxLaunchFailures: 'SandboxLaunchFailures',
  /**
   * RunTask of a sandbox started ahead of its release still failed after the retries: the step starts at its
   * release instead (no failure). Capacity or the vCPU quota under pressure from pre-starts.
   */
  PrestartFallbacks: 'PrestartFallbacks',
} as const;

export type MetricName = (typeof Metric)[keyof typeof Metric];

export type MetricUnit = 'Count' | 'Milliseconds';

export const METRIC_UNITS: Readonly<Record<MetricName, MetricUnit>> = {
  DeploymentsStarted: 'Count',
  DeploymentsSucceeded: 'Count',
  DeploymentsFailed: 'Count',
  DeploymentsCancelled: 'Count',
  StepDuration: 'Milliseconds',
  RetryableFailures: 'Count',
  SandboxStartLatency: 'Milliseconds',
  BastionRulesOpenAfterDeployment: 'Count',
  SandboxLaunchFailures: 'Count',
  PrestartFallbacks: 'Count',
};

/** The error names Step Functions gives a failed `ecs:runTask` (ECS's own exceptions and RunTask's `Failures`). */
export function isSandboxLaunchError(errorName: string | undefined): boolean {
  return errorName !== undefined && (errorName.startsWith('ECS.') || errorName.startsWith('AmazonECS.'));
}

/** Dimensions a metric may carry: few and bounded (an action name, an error name), never an id. */
export type MetricDimensions = Partial<Record<'Action' | 'ErrorName', string>>;

export interface MetricsPort {
  emit(name: MetricName, value: number, dimensions?: MetricDimensions): void;
}

/** For processes and tests that measure nothing. */
export const noMetrics: MetricsPort = { emit: () => undefined };
