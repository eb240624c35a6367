import { NotFoundError, PRESTART_LOST } from '../errors.ts';
import { Metric } from '../metrics.ts';
import type { StepRecord } from '../model.ts';
import { iso, type EngineDeps } from './deps.ts';
import { answer, releaseOf, settle, verdictFor, type Release } from './release.ts';
import { readableCause, type CaughtError } from './workflow.ts';

/**
 * AwaitRelease: the RunTask of a pre-started step failed for good (ECS faults after RunStepInSandbox's
 * retries), or its sandbox was lost before the release (PRESTART_LOST: core/usecases/sandboxStopped.ts,
 * sandbox/runner.ts). Pre-start is only an optimisation, so the step does not fail: it records the failed
 * pre-start, registers this iteration's new task token and waits for its real release, when it starts a sandbox the
 * normal way (docs/ARCHITECTURE.md, "Pre-start"). Safe to run twice: the state machine retries it.
 */
export async function awaitRelease(
  deps: EngineDeps,
  input: { deploymentId: string; stepId: string; taskToken: string; error?: CaughtError },
): Promise<Release | undefined> {
  const { deploymentId, stepId, taskToken } = input;
  const now = iso(deps.clock);
  // ECS's own words (no secret reaches a RunTask's error or a stop reason): what the user sees on the step.
  const lost = input.error?.Error === PRESTART_LOST;
  const failure = (lost ? readableCause(input.error?.Cause) : `${input.error?.Error ?? 'unknown error'}: ${readableCause(input.error?.Cause)}`).slice(0, 1000);
  // One write records the failure and the token, on a step still waiting: from here `settle` answers the token.
  const registered = await deps.store.updateStep(deploymentId, stepId, { awaitToken: taskToken, prestartFailedAt: now, prestartFailure: failure }, { ifStatus: ['waiting'] });
  deps.log('pre-started sandbox could not start; the step starts at its release', { deploymentId, stepId, error: input.error?.Error });
  deps.metrics.emit(Metric.PrestartFallbacks, 1);
  const own = await deps.store.getStep(deploymentId, stepId);
  if (!own) throw new NotFoundError(`step ${stepId} of deployment ${deploymentId} does not exist`);
  await deps.store.appendLogs(deploymentId, [
    { stepId, attempt: own.attempt, seq: PRESTART_LOG_SEQ, at: now, stream: 'engine', text: lost ? `${failure}; starting one at the release instead` : `sandbox started ahead of the release could not start (${failure}); starting one at the release instead` },
  ]);
  if (!registered) {
    // Released, skipped or cancelled while its RunTask was failing: the failure stays visible, the record answers.
    await deps.store.updateStep(deploymentId, stepId, { prestartFailedAt: now, prestartFailure: failure });
    return answerFromRecord(deps, taskToken, own);
  }
  const [deployment, all] = await Promise.all([deps.store.getDeployment(deploymentId), deps.store.getSteps(deploymentId)]);
  if (!deployment) throw new NotFoundError(`deployment ${deploymentId} does not exist`);
  const byId = new Map(all.map((s) => [s.stepId, s]));
  const step = byId.get(stepId) ?? own;
  // Never `prestart` again: `prestartedAt` stays, so verdictFor answers run, skip or wait.
  const verdict = verdictFor(step, deployment, byId, deps.prestart, deps.clock.now());
  const release = await settle(deps, step, verdict, 'lambda', byId);
  if (release || verdict.kind === 'wait') return release;
  // Another pass decided first, possibly from a read taken before this token was registered: answer it from the record.
  const current = await deps.store.getStep(deploymentId, stepId);
  return current ? answerFromRecord(deps, taskToken, current) : undefined;
}

/** The line goes under the attempts so far (none yet: 0), after their lines, so before the fresh sandbox's attempt. */
const PRESTART_LOG_SEQ = 99_999_998;

/** A step decided before this token could be answered by its decision: run it when it was released, else end the iteration. */
async function answerFromRecord(deps: EngineDeps, taskToken: string, step: StepRecord): Promise<Release | undefined> {
  if (step.status === 'waiting') return undefined;
  const release = releaseOf(step, step.status === 'running');
  await answer(deps, taskToken, release);
  return release;
}
