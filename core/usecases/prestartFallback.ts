import { ErrorName, NotFoundError, PRESTART_LOST } from '../errors.ts';
import { Metric } from '../metrics.ts';
import type { StepRecord } from '../model.ts';
import { iso, type EngineDeps } from './deps.ts';
import { answer, fail, hasWaitingSandbox, releaseOf, settle, verdictFor, windingDown, type Release } from './release.ts';
import { readableCause, type CaughtError } from './workflow.ts';

/**
 * AwaitRelease: the RunTask of a pre-started step failed for good (ECS faults after RunStepInSandbox's
 * retries), or its sandbox was lost before the release (PRESTART_LOST: core/usecases/sandboxStopped.ts,
 * sandbox/runner.ts). Pre-start is only an optimisation, so the step does not fail: it records the failed
 * pre-start, registers this iteration's new task token and waits for its real release, when it starts a sandbox the
 * normal way (docs/ARCHITECTURE.md, "Pre-start"). Safe to run twice: the state machine retries it.
 * A RunTask that ECS refused halts pre-start for the whole deployment (haltPrestart).
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
  // Best effort: a store error here must not fail the step (a sandbox up after the halt refuses to register anyway).
  if (!lost) await haltPrestart(deps, deploymentId, stepId, failure, now).catch((error: unknown) => deps.log('could not halt pre-start', { deploymentId, stepId, error }));
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

/**
 * MakeRoom: ECS refused a released step's sandbox for good (RunStepInSandbox's retries spent): no Fargate capacity,
 * or the account's vCPU quota. When sandboxes started ahead for other steps of the deployment hold that quota,
 * waiting for releases that may need this very step, pre-start halts (haltPrestart) and they give their places back:
 * the step starts again (ShouldRun → RunStepInSandbox, its retries afresh), at most MAKE_ROOM_ROUNDS times, since a
 * sandbox that gave its place back may hold its vCPU a while longer as its task stops. Otherwise (pre-start off, no
 * sandbox of the deployment ever waited, the step decided or the deployment winding down meanwhile, the rounds
 * spent, or the store failing) it fails with ECS's own error, exactly as without pre-start. Safe to run twice.
 */
export async function makeRoom(deps: EngineDeps, input: { deploymentId: string; stepId: string; taskToken: string; error?: CaughtError }): Promise<Release | undefined> {
  const { deploymentId, stepId, taskToken } = input;
  const refuse = async () => {
    await fail(deps, taskToken, input.error?.Error ?? ErrorName.StepFailed, input.error?.Cause ?? 'the sandbox could not start');
    return undefined;
  };
  // A released step's lost sandbox is no quota signal; without pre-start no sandbox waits ahead.
  if (!deps.prestart || input.error?.Error === PRESTART_LOST) return refuse();
  try {
    const now = iso(deps.clock);
    const failure = `${input.error?.Error ?? 'unknown error'}: ${readableCause(input.error?.Cause)}`.slice(0, 1000);
    const [deployment, step] = await Promise.all([deps.store.getDeployment(deploymentId), deps.store.getStep(deploymentId, stepId)]);
    const rounds = step?.makeRoomRounds ?? 0;
    if (!deployment || step?.status !== 'running' || windingDown(deployment) || rounds >= MAKE_ROOM_ROUNDS) return await refuse();
    const marked = await haltPrestart(deps, deploymentId, stepId, failure, now);
    if (marked === 0) return await refuse();
    await deps.store.updateStep(deploymentId, stepId, { makeRoomRounds: rounds + 1 });
    deps.log('sandbox refused while sandboxes started ahead held places: they give them back, the step starts again', { deploymentId, stepId, marked });
    await deps.store.appendLogs(deploymentId, [
      { stepId, attempt: step.attempt, seq: MAKE_ROOM_LOG_SEQ + rounds, at: now, stream: 'engine', text: `ECS refused the step's sandbox (${failure}) while ${marked} started ahead for other steps held places; they give them back and the step starts again` },
    ]);
    const release = releaseOf(step, true);
    await answer(deps, taskToken, release);
    return release;
  } catch (error) {
    // The store failed: ECS's error, not the store's, is what the step fails with, as without pre-start.
    deps.log('could not make room; the step fails with ECS\'s error', { deploymentId, stepId, error });
    return refuse();
  }
}

/** How many times MakeRoom starts a step again: one round of RunTask retries per round (about a minute or two in AWS). */
export const MAKE_ROOM_ROUNDS = 2;

/**
 * ECS refused a RunTask for good (no Fargate capacity, or the account's vCPU quota, which the sandboxes waiting for
 * their release hold too). Were they kept, a released step could find no room while they wait for it, and fail a
 * deployment that would succeed without pre-start. So the deployment starts no more sandboxes ahead
 * (`prestartHalted`, which also refuses any later claim: BaseDeploymentStore.claimPrestart), and each waiting one
 * is marked to give its place back: its runner sees the mark at its next poll (woken locally), and its step starts
 * at its release. A pre-start claimed before the halt but recorded after this read is not marked: its runner finds
 * the deployment halted when it comes up, and never registers (sandbox/runner.ts, `refuse`). Returns how many of the
 * deployment's other steps are marked, now or before: sandboxes that gave, or are giving, their places back.
 */
async function haltPrestart(deps: EngineDeps, deploymentId: string, stepId: string, failure: string, now: string): Promise<number> {
  const halted = await deps.store.updateDeployment(deploymentId, { prestartHalted: `ECS refused a RunTask (step ${stepId}): ${failure}`.slice(0, 1000) }, { ifAbsent: 'prestartHalted' });
  if (halted) deps.log('pre-start halted: the sandboxes waiting for their release give their places back', { deploymentId, stepId });
  const others = (await deps.store.getSteps(deploymentId)).filter((s) => s.stepId !== stepId);
  const toMark = others.filter((s) => hasWaitingSandbox(s) && s.prestartHaltedAt === undefined);
  const marked = await Promise.all(
    toMark.map(async (s) => {
      const won = await deps.store.updateStep(deploymentId, s.stepId, { prestartHaltedAt: now }, { ifStatus: ['waiting'], ifAbsent: 'prestartHaltedAt' });
      if (won && s.taskArn) deps.sandboxes.wake?.(s.taskArn);
      return won;
    }),
  );
  return others.filter((s) => s.prestartHaltedAt !== undefined).length + marked.filter(Boolean).length;
}

/** The line goes under the attempts so far (none yet: 0), after their lines, so before the fresh sandbox's attempt. */
const PRESTART_LOG_SEQ = 99_999_998;
/** MakeRoom's lines, one per round, likewise (before a pre-start's line for the same attempt, which would be older: cosmetic). */
const MAKE_ROOM_LOG_SEQ = 99_999_990;

/** A step decided before this token could be answered by its decision: run it when it was released, else end the iteration. */
async function answerFromRecord(deps: EngineDeps, taskToken: string, step: StepRecord): Promise<Release | undefined> {
  if (step.status === 'waiting') return undefined;
  const release = releaseOf(step, step.status === 'running');
  await answer(deps, taskToken, release);
  return release;
}
