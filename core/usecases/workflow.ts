import { ErrorName, NotFoundError } from '../errors.ts';
import { isSandboxLaunchError, Metric } from '../metrics.ts';
import type { DeploymentRecord, StepRecord } from '../model.ts';
import { iso, type EngineDeps } from './deps.ts';
import { expectedDurations } from './lookahead.ts';
import { answer, BASTION_OPEN, dependenciesOf, fail, settle, settleWaiting, verdictFor, type Release } from './release.ts';

/**
 * The step-side use-cases the state machine calls, one per Task state of RunWorkflow
 * (see statemachine/deployment.asl.json). Each is safe to run twice: the state machine retries them.
 */

/**
 * Steps per batch of RunWorkflow: each batch is an inline Map of its own, and an inline Map runs at
 * most 40 iterations at once (a waiting step holds its slot), so batches of 40 give every step its iteration.
 */
export const MAP_BATCH_STEPS = 40;

/** The topological order cut into consecutive batches of at most MAP_BATCH_STEPS, order kept. */
export function stepBatches(stepIds: readonly string[]): string[][] {
  const batches: string[][] = [];
  for (let i = 0; i < stepIds.length; i += MAP_BATCH_STEPS) batches.push(stepIds.slice(i, i + MAP_BATCH_STEPS));
  return batches;
}

/**
 * Prepare: the deployment starts running; the Map gets the workflow in topological order, in batches.
 * `stepIds` stays for executions started on a definition that maps over it.
 */
export async function prepare(deps: EngineDeps, deploymentId: string): Promise<{ stepIds: string[]; batches: string[][] }> {
  const deployment = await deps.store.getDeployment(deploymentId);
  if (!deployment) throw new NotFoundError(`deployment ${deploymentId} does not exist`);
  // Refused when cancelled before it started, or on a retried invocation: both are fine.
  await deps.store.applyDeploymentTransition(deploymentId, { name: 'start', by: 'lambda', fields: { updatedAt: iso(deps.clock) } });
  // Before any step is decided: pre-start's lookahead reads it with every verdict.
  if (deps.prestart?.startSeconds !== undefined && !deployment.expectedStepSeconds) {
    const expected = await expectedDurations(deps.store, deployment);
    if (expected) await deps.store.updateDeployment(deploymentId, { expectedStepSeconds: expected });
  }
  return { stepIds: deployment.stepIds, batches: stepBatches(deployment.stepIds) };
}

/**
 * AwaitDependencies: register the iteration's task token, then release the step at once if it
 * can already be decided. Otherwise the token is answered later by whoever finishes its last dependency.
 */
export async function awaitDependencies(
  deps: EngineDeps,
  input: { deploymentId: string; stepId: string; taskToken: string },
): Promise<Release | undefined> {
  const { deploymentId, stepId } = input;
  const registered = await deps.store.updateStep(deploymentId, stepId, { awaitToken: input.taskToken }, { ifStatus: ['waiting'] });
  const [deployment, own] = await Promise.all([deps.store.getDeployment(deploymentId), deps.store.getStep(deploymentId, stepId)]);
  if (!deployment || !own) throw new NotFoundError(`step ${stepId} of deployment ${deploymentId} does not exist`);
  if (!registered) {
    // Already decided (a retried invocation, or skipped before it registered): answer from the record.
    await answer(deps, input.taskToken, { run: false, timeoutSeconds: 1 } satisfies Release);
    return undefined;
  }
  // Its own dependencies decide a run, a skip or a wait (see dependencyReads); only a pre-start needs the whole deployment.
  let byId = await dependencyReads(deps, own);
  let step = own;
  let verdict = byId ? verdictFor(step, deployment, byId, deps.prestart, deps.clock.now()) : undefined;
  const partial = byId !== undefined && verdict?.kind !== 'prestart';
  if (!partial) {
    byId = new Map((await deps.store.getSteps(deploymentId)).map((s) => [s.stepId, s]));
    step = byId.get(stepId) ?? own;
    verdict = verdictFor(step, deployment, byId, deps.prestart, deps.clock.now());
  }
  const release = await settle(deps, step, verdict!, 'lambda', byId);
  // This step's sandbox may now boot: steps waiting on it may pre-start theirs too (a fresh read: one
  // registering meanwhile may have read this step before it started). Nothing else can gain from it.
  // From a read of its dependencies only, whether a dependent is left undecided is unknown: the pass finds out.
  if (deps.prestart && release?.run && (partial || hasUndecidedDependent(stepId, byId!))) await settleWaiting(deps, deploymentId);
  return release;
}

/** Beyond this many dependencies one Query of the deployment's steps is cheaper than a GetItem each. */
const DEPENDENCY_READS_MAX = 8;

/**
 * The records `verdictFor` reads for this step, each a consistent GetItem: its dependencies (a root's:
 * bastion-open). On them alone it answers run, skip or wait exactly as on every step of the deployment;
 * only `prestart` also counts the deployment's waiting sandboxes (the cap): that verdict is taken again
 * on a full read. Undefined when a full read is cheaper.
 */
async function dependencyReads(deps: EngineDeps, step: StepRecord): Promise<Map<string, StepRecord> | undefined> {
  const ids = step.system ? step.dependsOn : step.dependsOn.length > 0 ? step.dependsOn : [BASTION_OPEN];
  if (ids.length > DEPENDENCY_READS_MAX) return undefined;
  const read = await Promise.all(ids.map((id) => deps.store.getStep(step.deploymentId, id)));
  const byId = new Map<string, StepRecord>([[step.stepId, step]]);
  for (const s of read) if (s) byId.set(s.stepId, s);
  return byId;
}

/**
 * Whether a step waiting on `stepId` could still be pre-started. Only its dependents gain from its start, and
 * a dependent decided or pre-started in a read stays so (no status returns to `waiting`, `prestartedAt` is never
 * removed): without one left, the pass after its release would read the whole deployment for nothing.
 */
function hasUndecidedDependent(stepId: string, steps: Map<string, StepRecord>): boolean {
  for (const s of steps.values()) {
    if (s.status === 'waiting' && s.prestartedAt === undefined && dependenciesOf(s, steps).includes(stepId)) return true;
  }
  return false;
}

/**
 * A workflow step no other step depends on (read from the workflow the deployment keeps): its end can release no
 * step, and changes nothing a pass decides on, save the time. bastion-open, every root's dependency, always takes
 * the pass. So does any step of a re-run: the lookahead by time (expectedStepSeconds) decides by the clock, and
 * having no timer of its own it re-decides at every pass, a leaf's end among them. A pre-start place freed without
 * a pass (a pre-start whose RunTask failed, a sandbox lost or idled out) is handed out at the next one.
 */
function releasesNothing(deployment: DeploymentRecord, stepId: string): boolean {
  if (deployment.expectedStepSeconds || !deployment.stepIds.includes(stepId)) return false;
  return !deployment.topology.workflow.steps.some((s) => s.dependsOn.includes(stepId));
}

/** RecordStepResult: the step succeeded; its dependents may now run. */
export async function recordStepResult(
  deps: EngineDeps,
  input: { deploymentId: string; stepId: string; result?: unknown },
): Promise<void> {
  const output = isRecord(input.result) ? input.result : undefined;
  // Refused when the step was aborted or cancelled meanwhile: that record stands.
  const succeeded = await deps.store.applyStepTransition(input.deploymentId, input.stepId, {
    name: 'succeed',
    by: 'lambda',
    fields: { endedAt: iso(deps.clock), ...(output ? { output } : {}) },
  });
  // `succeed` clears the sandbox fields in its own write: one round trip less before the dependents' release.
  if (!succeeded.applied) await deps.store.clearStepFields(input.deploymentId, input.stepId, ['taskToken', 'taskArn']);
  // Only its dependents can have become ready; settleWaiting releases exactly those. A step nothing depends on
  // releases nothing: one read of the deployment instead of a pass over all its steps (200 independent steps took
  // 200 passes over 200 steps, which starved the engine's other Lambdas on one machine).
  const read = await deps.store.getDeployment(input.deploymentId);
  const deployment = read && releasesNothing(read, input.stepId) ? read : await settleWaiting(deps, input.deploymentId, 'lambda', read);
  // That read came after this step's end: a grace period registered later checks the steps itself.
  await endGraceIfIdle(deps, input.deploymentId, deployment ?? null);
}

/** The States error object a Catch puts at ResultPath. */
export interface CaughtError {
  Error?: string;
  Cause?: string;
}

const TRANSITION_OF_ERROR: Partial<Record<string, 'fail-aborted' | 'fail-cancelled'>> = {
  [ErrorName.StepAborted]: 'fail-aborted',
  [ErrorName.Cancelled]: 'fail-cancelled',
};

/**
 * RecordStepFailure: mark the step, and if it is the deployment's first failure, skip every
 * step not yet started and answer startGrace so this iteration runs the grace period. Also
 * called for bastion-open (RecordBastionFailure): its failure skips the roots waiting on it.
 */
export async function recordStepFailure(
  deps: EngineDeps,
  input: { deploymentId: string; stepId: string; error?: CaughtError },
): Promise<{ startGrace: boolean }> {
  const error = input.error?.Error ?? ErrorName.StepFailed;
  const cause = readableCause(input.error?.Cause);
  const transition = TRANSITION_OF_ERROR[error] ?? 'fail';
  const now = iso(deps.clock);
  // A step aborted or cancelled by the engine was already marked: the refusal keeps that record.
  await deps.store.applyStepTransition(input.deploymentId, input.stepId, { name: transition, by: 'lambda', fields: { error, cause, endedAt: now } });
  await deps.store.clearStepFields(input.deploymentId, input.stepId, ['taskToken', 'taskArn', 'awaitToken']);
  deps.log('step failed', { deploymentId: input.deploymentId, stepId: input.stepId, error });
  // bastion-open's launch failure is counted once, by DeleteSecrets, which sees it as the deployment's error.
  if (isSandboxLaunchError(error) && input.stepId !== BASTION_OPEN) deps.metrics.emit(Metric.SandboxLaunchFailures, 1);

  let startGrace = false;
  if (transition === 'fail') {
    startGrace = await deps.store.updateDeployment(input.deploymentId, { graceStartedAt: now, updatedAt: now }, { ifAbsent: 'graceStartedAt' });
  }
  await settleWaiting(deps, input.deploymentId);
  await endGraceIfIdle(deps, input.deploymentId);
  return { startGrace };
}

/** GracePeriod: wait (on this token) until nothing else runs, at most the state's TimeoutSeconds. */
export async function gracePeriod(deps: EngineDeps, input: { deploymentId: string; taskToken: string }): Promise<void> {
  await deps.store.updateDeployment(input.deploymentId, { graceToken: input.taskToken });
  await endGraceIfIdle(deps, input.deploymentId);
}

/**
 * Ends the grace period early once no step is running any more. `read` is a deployment read made
 * after the caller's own change (null: the deployment is gone), which saves reading it again.
 */
export async function endGraceIfIdle(deps: EngineDeps, deploymentId: string, read?: DeploymentRecord | null): Promise<void> {
  const deployment = read === undefined ? await deps.store.getDeployment(deploymentId) : read;
  const token = deployment?.graceToken;
  if (!token) return;
  const steps = await deps.store.getSteps(deploymentId);
  if (steps.some((s) => !s.system && s.status === 'running')) return;
  await deps.store.clearDeploymentFields(deploymentId, ['graceToken']);
  await answer(deps, token, { ended: 'nothing else running' });
}

/** AbortStragglers: the grace period is over; steps still running are set on error and stopped. */
export async function abortStragglers(deps: EngineDeps, deploymentId: string): Promise<{ aborted: string[] }> {
  await deps.store.clearDeploymentFields(deploymentId, ['graceToken']);
  const steps = await deps.store.getSteps(deploymentId);
  const failed = steps.find((s) => s.status === 'failed');
  const cause = `still running when the grace period after the failure of step "${failed?.stepId ?? '?'}" ended`;
  const aborted: string[] = [];
  for (const step of steps.filter((s) => !s.system && s.status === 'running')) {
    const marked = await deps.store.applyStepTransition(deploymentId, step.stepId, {
      name: 'abort',
      by: 'lambda',
      fields: { error: ErrorName.StepAborted, cause, endedAt: iso(deps.clock) },
    });
    // It ended (or was cancelled) since the read: nothing to stop.
    if (!marked.applied) continue;
    aborted.push(step.stepId);
    await stopSandbox(deps, step, ErrorName.StepAborted, cause);
  }
  return { aborted };
}

/** Fails the sandbox's task token (so its iteration moves on) and stops the sandbox itself. */
export async function stopSandbox(deps: EngineDeps, step: StepRecord, error: string, cause: string): Promise<void> {
  if (step.taskToken) await fail(deps, step.taskToken, error, cause);
  if (step.taskArn) await deps.sandboxes.stopTask(step.taskArn, `${error}: ${cause}`.slice(0, 255));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Lambda errors arrive as a JSON Cause ({errorMessage, errorType}); the user wants the message. */
export function readableCause(cause: string | undefined): string {
  if (!cause) return 'no cause given';
  try {
    const parsed: unknown = JSON.parse(cause);
    if (isRecord(parsed) && typeof parsed.errorMessage === 'string') return parsed.errorMessage;
  } catch {
    // not JSON: a cause written by the runner or by Step Functions itself
  }
  return cause;
}
