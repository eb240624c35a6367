import { MAX_CLEANUP_ATTEMPTS } from '../config/limits.ts';
import { FINAL_DEPLOYMENT_STATUSES } from '../model.ts';
import { iso, type EngineDeps } from './deps.ts';
import { destroySecrets, executionEndedOutsideCleanup } from './finalize.ts';
import { stopSandbox, type CaughtError } from './workflow.ts';

/**
 * The safety net: an execution of the deployment state machine ended FAILED, TIMED_OUT or ABORTED
 * (EventBridge "Step Functions Execution Status Change" in AWS; the local runtime emits the same).
 * When it ended without its Cleanup having recorded a final status, the net stops what still
 * runs and starts a cleanup-only execution of the same state machine: the bastion rule is closed
 * by the same sandbox action, with the user's token, before the secrets are deleted, and the
 * deployment ends with a cause the user can read. Only when cleanup executions themselves keep
 * failing does it delete the secrets and report the rule as possibly open.
 */

export interface ExecutionEnded {
  executionName: string;
  status: string;
  /** The execution's input as Step Functions reports it (a JSON string), when known. */
  input?: string | null;
  error?: string | null;
  cause?: string | null;
  /** Epoch milliseconds. */
  startDate?: number | null;
  stopDate?: number | null;
}

/** What a cleanup-only execution gets as input; the ASL's first Choice sends it straight to CloseBastionAccess. */
export interface CleanupInput {
  deploymentId: string;
  cleanup: { attempt: number; executionStatus: string };
  /** Read by DeleteSecrets as the error caught before the workflow ended: the deployment's cause. */
  error: Required<CaughtError>;
}

export type SafetyNetOutcome = 'already-final' | 'cleanup-started' | 'gave-up' | 'unknown-deployment';

export async function onExecutionEnded(deps: EngineDeps, event: ExecutionEnded): Promise<SafetyNetOutcome> {
  const input = parseInput(event.input);
  const deploymentId = typeof input?.deploymentId === 'string' ? input.deploymentId : event.executionName;
  const deployment = await deps.store.getDeployment(deploymentId);
  if (!deployment) {
    await destroySecrets(deps, deploymentId);
    return 'unknown-deployment';
  }
  if (FINAL_DEPLOYMENT_STATUSES.includes(deployment.status)) {
    // Cleanup ran (or the net already ended it): deleting again is harmless and covers a failed DeleteSecrets.
    await destroySecrets(deps, deploymentId);
    return 'already-final';
  }
  const previous = cleanupOf(input);
  const reason = previous ? `${previous.reason}; then its cleanup execution ${happened(event)}` : `the execution ${happened(event)}`;
  const attempt = (previous?.attempt ?? 0) + 1;
  const executionStatus = previous?.executionStatus ?? event.status;
  await stopWhatRuns(deps, deploymentId, reason);
  if (attempt <= MAX_CLEANUP_ATTEMPTS) {
    const cleanup: CleanupInput = {
      deploymentId,
      cleanup: { attempt, executionStatus },
      error: { Error: `Ctd.Execution${capitalize(executionStatus)}`, Cause: reason },
    };
    try {
      await deps.executions.start(cleanupExecutionName(deploymentId, attempt), cleanup);
      deps.log('cleanup execution started', { deploymentId, attempt, executionStatus: event.status });
      return 'cleanup-started';
    } catch (error) {
      deps.log('could not start a cleanup execution', { deploymentId, attempt, error });
    }
  }
  await executionEndedOutsideCleanup(deps, { deploymentId, executionStatus, reason });
  return 'gave-up';
}

/** One name per attempt: StartExecution under a used name is refused, so a repeated event starts nothing twice. */
export function cleanupExecutionName(deploymentId: string, attempt: number): string {
  return `${deploymentId}-cleanup-${attempt}`;
}

/**
 * Running steps are aborted and their sandboxes stopped (in AWS a stopped execution leaves its
 * ECS tasks running); waiting steps are skipped. bastion-close is left to the cleanup execution.
 */
async function stopWhatRuns(deps: EngineDeps, deploymentId: string, reason: string): Promise<void> {
  // A Lambda of the dead execution may still move a step from waiting to running between our read
  // and our conditional write (local handlers get no cancel signal): a second pass catches it.
  for (let pass = 0; pass < 3; pass++) {
    const now = iso(deps.clock);
    // bastion-close is the cleanup execution's to run: skipping it here would refuse that run.
    const live = (await deps.store.getSteps(deploymentId)).filter((s) => s.stepId !== BASTION_CLOSE && (s.status === 'waiting' || s.status === 'running'));
    if (live.length === 0) return;
    for (const step of live) {
      const waiting = step.status === 'waiting';
      const marked = await deps.store.applyStepTransition(deploymentId, step.stepId, {
        name: waiting ? 'skip' : 'abort',
        by: 'safety-net',
        fields: waiting ? { cause: reason, endedAt: now } : { error: 'Ctd.StepAborted', cause: reason, endedAt: now },
      });
      // A waiting step may hold a pre-started sandbox: it is stopped like a running one.
      if (marked.applied && (!waiting || step.taskArn)) {
        await stopSandbox(deps, step, 'Ctd.StepAborted', reason).catch((error: unknown) => deps.log('could not stop a sandbox', { deploymentId, stepId: step.stepId, error }));
      }
    }
  }
}

const BASTION_CLOSE = 'bastion-close';

/** The readable why, as a verb phrase: "was stopped …", "timed out after N s …", "failed …". */
export function happened(event: ExecutionEnded): string {
  const given = event.cause ? `: ${event.cause}` : '';
  if (event.status === 'ABORTED') return `was stopped from outside the engine (StopExecution from the console, CLI or API)${given}`;
  if (event.status === 'TIMED_OUT') {
    const ran = event.startDate && event.stopDate ? ` after ${Math.round((event.stopDate - event.startDate) / 1000)} s` : '';
    return `timed out${ran}, the longest an execution may run`;
  }
  return `failed outside Cleanup (${event.error ?? 'no error given'})${given}`;
}

function parseInput(text: string | null | undefined): Record<string, unknown> | undefined {
  if (!text) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

function cleanupOf(input: Record<string, unknown> | undefined): { attempt: number; executionStatus: string; reason: string } | undefined {
  const cleanup = input?.cleanup as { attempt?: unknown; executionStatus?: unknown } | undefined;
  if (!cleanup || typeof cleanup.attempt !== 'number') return undefined;
  const error = input?.error as { Cause?: unknown } | undefined;
  return {
    attempt: cleanup.attempt,
    executionStatus: typeof cleanup.executionStatus === 'string' ? cleanup.executionStatus : 'FAILED',
    reason: typeof error?.Cause === 'string' ? error.Cause : 'the execution ended outside Cleanup',
  };
}

function capitalize(s: string): string {
  return s
    .toLowerCase()
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}
