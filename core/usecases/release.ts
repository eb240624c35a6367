import { DEFAULT_STEP_TIMEOUT_SECONDS } from '../deployment/schema.ts';
import { TaskTokenGoneError } from '../errors.ts';
import type { DeploymentRecord, StepRecord, StepStatus } from '../model.ts';
import { iso, type EngineDeps } from './deps.ts';

/**
 * Releasing steps from AwaitDependencies. A step is released exactly once: the conditional
 * move out of `waiting` decides who releases it, whichever of "the step registered its token"
 * and "its last dependency finished" happens second. See docs/ARCHITECTURE.md ("Scheduling").
 */

/** What AwaitDependencies answers: run the sandbox (with the step's time limit) or skip it. */
export interface Release {
  run: boolean;
  timeoutSeconds: number;
}

export type Verdict = { kind: 'run' } | { kind: 'skip'; status: Extract<StepStatus, 'skipped' | 'cancelled'>; cause: string } | { kind: 'wait' };

/** A deployment is winding down once cancelled or once any step failed: nothing new starts. */
export function windingDown(deployment: DeploymentRecord): { status: 'skipped' | 'cancelled'; cause: string } | undefined {
  if (deployment.status === 'CANCELLING' || deployment.status === 'CANCELLED') {
    return { status: 'cancelled', cause: 'the deployment was cancelled before this step started' };
  }
  if (deployment.graceStartedAt) {
    return { status: 'skipped', cause: 'not started: another step of the deployment failed' };
  }
  return undefined;
}

export function verdictFor(step: StepRecord, deployment: DeploymentRecord, steps: Map<string, StepRecord>): Verdict {
  const down = windingDown(deployment);
  if (down) return { kind: 'skip', ...down };
  for (const dep of step.dependsOn) {
    const status = steps.get(dep)?.status;
    if (status !== 'succeeded' && status !== 'waiting' && status !== 'running') {
      return { kind: 'skip', status: 'skipped', cause: `dependency "${dep}" ${status ?? 'is missing'}` };
    }
  }
  return step.dependsOn.every((dep) => steps.get(dep)?.status === 'succeeded') ? { kind: 'run' } : { kind: 'wait' };
}

function releaseOf(step: StepRecord, run: boolean): Release {
  return { run, timeoutSeconds: step.spec.timeoutSeconds ?? DEFAULT_STEP_TIMEOUT_SECONDS };
}

/**
 * Applies a verdict to a waiting step: moves it out of `waiting` (only one caller wins) and,
 * when its AwaitDependencies token is known, answers it. Returns the release when this caller won.
 */
export async function settle(deps: EngineDeps, step: StepRecord, verdict: Verdict, by: 'lambda' | 'cancel' = 'lambda'): Promise<Release | undefined> {
  if (verdict.kind === 'wait') return undefined;
  const now = iso(deps.clock);
  const won =
    verdict.kind === 'run'
      ? await deps.store.applyStepTransition(step.deploymentId, step.stepId, { name: 'release', by, fields: { startedAt: now } })
      : await deps.store.applyStepTransition(step.deploymentId, step.stepId, {
          name: verdict.status === 'cancelled' ? 'cancel-waiting' : 'skip',
          by,
          fields: { cause: verdict.cause, endedAt: now },
        });
  // Another caller moved it out of `waiting` first: the release is theirs to answer.
  if (!won.applied) return undefined;
  const release = releaseOf(step, verdict.kind === 'run');
  deps.log('step released', { deploymentId: step.deploymentId, stepId: step.stepId, run: release.run });
  if (step.awaitToken) {
    await answer(deps, step.awaitToken, release);
    await deps.store.clearStepFields(step.deploymentId, step.stepId, ['awaitToken']);
  }
  return release;
}

/** Re-evaluates the waiting steps after something changed (a step ended, a failure, a cancel). */
export async function settleWaiting(deps: EngineDeps, deploymentId: string, by: 'lambda' | 'cancel' = 'lambda'): Promise<void> {
  const [deployment, all] = await Promise.all([deps.store.getDeployment(deploymentId), deps.store.getSteps(deploymentId)]);
  if (!deployment) return;
  const byId = new Map(all.map((s) => [s.stepId, s]));
  for (const step of all.filter((s) => !s.system && s.status === 'waiting')) {
    // Only steps that registered their token can be answered now; the others settle themselves on registration.
    if (step.awaitToken) await settle(deps, step, verdictFor(step, deployment, byId), by);
  }
}

/** Sends a task token its answer; a token the state machine no longer waits on is not an error here. */
export async function answer(deps: EngineDeps, taskToken: string, output: unknown): Promise<void> {
  try {
    await deps.executions.sendTaskSuccess(taskToken, output);
  } catch (e) {
    if (!(e instanceof TaskTokenGoneError)) throw e;
  }
}

export async function fail(deps: EngineDeps, taskToken: string, error: string, cause: string): Promise<void> {
  try {
    await deps.executions.sendTaskFailure(taskToken, error, cause);
  } catch (e) {
    if (!(e instanceof TaskTokenGoneError)) throw e;
  }
}
