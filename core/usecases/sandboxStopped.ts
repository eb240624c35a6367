import { ErrorName, PRESTART_LOST, TaskTokenGoneError } from '../errors.ts';
import { idleBeforeTakeBack } from '../lifecycle/step.ts';
import type { StepRecord } from '../model.ts';
import { Metric } from '../metrics.ts';
import { iso, type EngineDeps } from './deps.ts';
import { answer, fail, type SkippedAnswer } from './release.ts';

/**
 * A sandbox task stopped (ECS "Task State Change" → STOPPED, or the local launcher's same event).
 * Step Functions does not watch the task it started with `.waitForTaskToken`, so without this a
 * sandbox that never started or died mid-step would only be noticed at the heartbeat timeout.
 */
export interface SandboxStop {
  taskArn: string;
  deploymentId: string;
  stepId: string;
  taskToken: string;
  /** ECS's stopCode: TaskFailedToStart, EssentialContainerExited, UserInitiated, SpotInterruption, … */
  stopCode?: string;
  stoppedReason: string;
  /** The runner container's exit code and reason (e.g. "OutOfMemoryError: Container killed due to memory usage"). */
  exitCode?: number;
  containerReason?: string;
}

/** The runner exits 0 or 1 only after it answered its task token itself (sandbox/main.ts). */
const ANSWERED_EXIT_CODES = new Set([0, 1]);

/** Sorts after every line the runner wrote for the same attempt (the store orders by seq). */
const STOP_LOG_SEQ = 99_999_999;

/**
 * Fails the step's task token at once with Ctd.SandboxLost and ECS's reason, and records the
 * reason on the step (field and log line) so the user sees why even when the retry succeeds.
 * A token already answered (the runner reported, or the engine aborted or cancelled the step)
 * means the stop was expected: nothing is recorded. A sandbox started ahead of its release is
 * reported otherwise: lost while its step waits, as PRESTART_LOST (the step starts at its release);
 * its step skipped or cancelled meanwhile, with the answer its runner would have given.
 */
export async function sandboxStopped(deps: EngineDeps, stop: SandboxStop): Promise<{ failed: boolean }> {
  if (stop.exitCode !== undefined && ANSWERED_EXIT_CODES.has(stop.exitCode)) return { failed: false };
  const reason = describeStop(stop);
  let before = await deps.store.getStep(stop.deploymentId, stop.stepId);
  if (before && lostBeforeRelease(before, stop.taskArn)) {
    if (await takeBackPrestart(deps, stop, before, reason)) return reportPrestartLost(deps, stop, reason);
    before = await deps.store.getStep(stop.deploymentId, stop.stepId);
    // Refused because its runner took the registration back first (then died, or its answer is on the way): still a loss before the release.
    if (before && lostBeforeRelease(before, stop.taskArn)) return reportPrestartLost(deps, stop, reason);
    // Released or decided since the first read: handled below as that step's sandbox.
  }
  if (before && (await answerAsDecided(deps, stop.taskToken, before))) return { failed: false };
  try {
    await deps.executions.sendTaskFailure(stop.taskToken, ErrorName.SandboxLost, reason);
  } catch (e) {
    if (e instanceof TaskTokenGoneError) return { failed: false };
    throw e;
  }
  deps.log('sandbox lost', { deploymentId: stop.deploymentId, stepId: stop.stepId, taskArn: stop.taskArn, reason });
  // Ctd.SandboxLost is retried once by the state machine (the error table).
  deps.metrics.emit(Metric.RetryableFailures, 1, { ErrorName: ErrorName.SandboxLost });

  const step = await deps.store.getStep(stop.deploymentId, stop.stepId);
  if (!step) return { failed: true };
  // A sandbox that never started did not record its attempt; count it, so the retry's lines stay apart.
  const started = step.taskArn === stop.taskArn;
  const attempt = started ? step.attempt : step.attempt + 1;
  const now = iso(deps.clock);
  // The token is failed already, so the state machine's retry may have claimed the step meanwhile:
  // that sandbox owns the record now, and the lost one must not end it.
  const retryOwnsIt = !started && step.taskArn !== undefined;
  if (step.system && !retryOwnsIt) {
    // System steps record their own outcome from inside the sandbox; this one cannot any more.
    // Conditional on the attempt read: a retry claiming the step between our read and write wins.
    await deps.store.applyStepTransition(stop.deploymentId, stop.stepId, {
      name: 'sandbox-lost',
      by: 'sandbox-events',
      ifAttempt: step.attempt,
      fields: { attempt, stopReason: reason, error: ErrorName.SandboxLost, cause: reason, endedAt: now },
    });
  } else if (!step.system) {
    await deps.store.updateStep(stop.deploymentId, stop.stepId, { attempt, stopReason: reason });
  }
  if (started) await deps.store.clearStepFields(stop.deploymentId, stop.stepId, ['taskToken', 'taskArn']);
  await deps.store.appendLogs(stop.deploymentId, [
    { stepId: stop.stepId, attempt, seq: STOP_LOG_SEQ, at: now, stream: 'engine', text: `sandbox lost: ${reason}` },
  ]);
  return { failed: true };
}

/**
 * The step still waits for its release, and this was its pre-started sandbox (registered, or never up): it
 * ran nothing of the user's. Pre-start is an optimisation only, so the loss must not cost the step its retry.
 */
function lostBeforeRelease(step: StepRecord, taskArn: string): boolean {
  return !step.system && step.status === 'waiting' && step.prestartedAt !== undefined && step.prestartFailedAt === undefined && (step.taskArn ?? taskArn) === taskArn;
}

/**
 * Takes the lost sandbox's registration back (it ran nothing of the step: no attempt), or, when it never
 * registered, records why it stopped; both only while the step still waits. False when it no longer does.
 */
async function takeBackPrestart(deps: EngineDeps, stop: SandboxStop, step: StepRecord, reason: string): Promise<boolean> {
  if (step.taskArn !== stop.taskArn) return deps.store.updateStep(stop.deploymentId, stop.stepId, { stopReason: reason }, { ifStatus: ['waiting'] });
  const taken = await deps.store.applyStepTransition(stop.deploymentId, stop.stepId, {
    name: 'prestart-lost',
    by: 'sandbox-events',
    ifAttempt: step.attempt,
    fields: { attempt: step.attempt - 1, stopReason: reason, ...idleBeforeTakeBack(step.readyAt, deps.clock.now()) },
  });
  return taken.applied;
}

/**
 * Fails the token with PRESTART_LOST, which the state machine routes to AwaitRelease: it records the failed
 * pre-start, and the step starts a fresh sandbox at its release (the runner reports the same when ECS stops it).
 */
async function reportPrestartLost(deps: EngineDeps, stop: SandboxStop, reason: string): Promise<{ failed: boolean }> {
  try {
    await deps.executions.sendTaskFailure(stop.taskToken, PRESTART_LOST, `the sandbox started ahead of the release was lost: ${reason}`);
  } catch (e) {
    if (e instanceof TaskTokenGoneError) return { failed: false };
    throw e;
  }
  deps.log('pre-started sandbox lost before its release', { deploymentId: stop.deploymentId, stepId: stop.stepId, taskArn: stop.taskArn, reason });
  return { failed: true };
}

/**
 * A pre-started sandbox whose step was skipped or cancelled while it waited: its token gets the answer its
 * runner would have given (stopWaitingSandbox in release.ts gives the same), not Ctd.SandboxLost, whose retry
 * would start one more sandbox only to refuse. A token answered already is left as it is.
 */
async function answerAsDecided(deps: EngineDeps, taskToken: string, step: StepRecord): Promise<boolean> {
  if (step.system || step.prestartedAt === undefined) return false;
  const cause = step.cause ?? `step ${step.stepId} is ${step.status}`;
  if (step.status === 'skipped') await answer(deps, taskToken, { skipped: cause } satisfies SkippedAnswer);
  else if (step.status === 'cancelled') await fail(deps, taskToken, ErrorName.Cancelled, cause);
  else return false;
  return true;
}

/** One line for the user: why ECS stopped the task, and what became of the runner. */
export function describeStop(stop: SandboxStop): string {
  const parts = [stop.stoppedReason || 'the sandbox stopped'];
  if (stop.stopCode) parts[0] = `${parts[0]} (${stop.stopCode})`;
  if (stop.containerReason) parts.push(stop.containerReason);
  if (stop.exitCode !== undefined) parts.push(`exit code ${stop.exitCode}`);
  return `${parts.join('; ')}`.slice(0, 2000);
}
