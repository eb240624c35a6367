import type { DeploymentStatus, StepRecord, StepStatus } from '../model.ts';
import { FINAL_DEPLOYMENT_STATUSES } from '../model.ts';
import { ErrorName } from '../errors.ts';
import type { DeploymentTransitionName } from '../lifecycle/deployment.ts';
import { isSandboxLaunchError, Metric } from '../metrics.ts';
import { iso, type EngineDeps } from './deps.ts';
import { idleSandboxSeconds } from './release.ts';
import { readableCause, type CaughtError } from './workflow.ts';

/** Summarize and Cleanup: the deployment's outcome, and the secrets gone in every outcome. */

export interface Outcome {
  status: Extract<DeploymentStatus, 'SUCCEEDED' | 'FAILED' | 'CANCELLED'>;
  error: string | null;
  cause: string | null;
}

export async function summarize(
  deps: EngineDeps,
  deploymentId: string,
): Promise<Outcome & { counts: Partial<Record<StepStatus, number>>; idleSandboxSeconds: number }> {
  const [deployment, steps] = await Promise.all([deps.store.getDeployment(deploymentId), deps.store.getSteps(deploymentId)]);
  const workflow = steps.filter((s) => !s.system);
  const counts: Partial<Record<StepStatus, number>> = {};
  for (const s of workflow) counts[s.status] = (counts[s.status] ?? 0) + 1;
  // Every step has ended: the idle seconds are final. Stored for the user (and the bill); not part of the outcome.
  const idle = idleSandboxSeconds(workflow, deps.clock.now());
  if (workflow.some((s) => s.readyAt || s.prestartIdleSeconds)) await deps.store.updateDeployment(deploymentId, { idleSandboxSeconds: idle });
  return { ...outcomeOf(deployment?.status, workflow), counts, idleSandboxSeconds: idle };
}

/** The root cause: the first step that failed, not the ones skipped or aborted because of it. */
function outcomeOf(status: DeploymentStatus | undefined, workflow: StepRecord[]): Outcome {
  if (status === 'CANCELLING' || status === 'CANCELLED') {
    return { status: 'CANCELLED', error: ErrorName.Cancelled, cause: 'the deployment was cancelled by the user' };
  }
  if (workflow.every((s) => s.status === 'succeeded')) return { status: 'SUCCEEDED', error: null, cause: null };
  const byEnd = (a: StepRecord, b: StepRecord) => (a.endedAt ?? '').localeCompare(b.endedAt ?? '');
  const root = workflow.filter((s) => s.status === 'failed').sort(byEnd)[0] ?? workflow.find((s) => s.status !== 'succeeded');
  return {
    status: 'FAILED',
    error: root?.error ?? ErrorName.StepFailed,
    cause: `step "${root?.stepId}" ${root?.status}: ${root?.cause ?? 'no cause given'}`,
  };
}

/**
 * The items go first, then the deployment's decrypt grant: a KMS failure must not keep the items,
 * and a retry (its ciphertext gone) finds the grant by name. Copies of the items that survive the
 * delete (backups, point-in-time recovery, LevelDB's log) cannot be decrypted once the grant is retired.
 */
export async function destroySecrets(deps: EngineDeps, deploymentId: string): Promise<void> {
  const secrets = await deps.store.getSecrets(deploymentId);
  await deps.store.deleteSecrets(deploymentId);
  await deps.vault.shred(deploymentId, secrets?.tokenCiphertext);
}

/** What Cleanup receives: the execution's state, with an error caught before the workflow ran, or a summary. */
export interface CleanupState {
  error?: CaughtError;
  summary?: { status?: string };
  closeError?: CaughtError;
}

/**
 * DeleteSecrets: delete the token and SSH key items and record the final status. Safe to
 * repeat; the status is written once (a deployment already final keeps its record).
 */
export async function deleteSecrets(deps: EngineDeps, deploymentId: string, state: CleanupState): Promise<Outcome> {
  await destroySecrets(deps, deploymentId);
  const openRules = state.closeError ? await openRuleIds(deps, deploymentId) : [];
  const now = iso(deps.clock);
  let outcome: Outcome;
  let ended = false;
  // A cancel landing between our read and our write changes the outcome (SUCCEEDED → CANCELLED):
  // the refused transition is read again and decided anew, until the deployment is final.
  for (let tries = 0; ; tries++) {
    const deployment = await deps.store.getDeployment(deploymentId);
    // Before the final status: a user who sees it final must never see a step still waiting.
    const steps = await settleNeverStarted(deps, deploymentId, deployment?.status === 'CANCELLING' || deployment?.status === 'CANCELLED', now);
    outcome = outcomeFor(deployment?.status, steps, state);
    if (state.closeError) outcome = closeFailed(outcome, state.closeError, openRules);
    // Refused once final: a repeated DeleteSecrets, or the safety net first, keeps the record written.
    const result = await deps.store.applyDeploymentTransition(deploymentId, {
      name: END_TRANSITION[outcome.status],
      by: 'lambda',
      fields: { endedAt: now, updatedAt: now, ...(outcome.error ? { error: outcome.error } : {}), ...(outcome.cause ? { cause: outcome.cause } : {}) },
    });
    if (result.applied) {
      ended = true;
      break;
    }
    if (result.current === undefined || FINAL_DEPLOYMENT_STATUSES.includes(result.current) || tries >= 3) break;
  }
  await deps.store.clearDeploymentFields(deploymentId, ['graceToken']);
  deps.log('deployment ended', { deploymentId, status: outcome.status, ...(outcome.error ? { errorName: outcome.error } : {}) });
  // Counted once: a retried DeleteSecrets finds the deployment final already.
  if (ended) {
    deps.metrics.emit(ENDED_METRIC[outcome.status], 1);
    for (const caught of [state.error, state.closeError]) if (isSandboxLaunchError(caught?.Error)) deps.metrics.emit(Metric.SandboxLaunchFailures, 1);
    // The rule on record, or one we cannot name: bastion-close failed, so something may be open.
    if (state.closeError) deps.metrics.emit(Metric.BastionRulesOpenAfterDeployment, Math.max(openRules.length, 1));
  }
  return outcome;
}

/**
 * Steps the workflow never reached (a cancel or failure during bastion-open skips RunWorkflow)
 * would stay `waiting` forever: the deployment's end decides them too. bastion-open included: a
 * cancel before its sandbox claimed it leaves it `waiting` (its runner refuses without a record).
 * Returns the deployment's steps after that.
 */
async function settleNeverStarted(deps: EngineDeps, deploymentId: string, cancelled: boolean, now: string): Promise<StepRecord[]> {
  const steps = await deps.store.getSteps(deploymentId);
  const waiting = steps.filter((step) => step.status === 'waiting');
  for (const step of waiting) {
    await deps.store.applyStepTransition(deploymentId, step.stepId, {
      name: cancelled ? 'cancel-waiting' : 'skip',
      by: 'lambda',
      fields: { cause: cancelled ? 'the deployment was cancelled before it started' : 'the deployment ended before it started', endedAt: now },
    });
  }
  // The steps as they now stand: read again only when something was decided (a race may have decided it otherwise).
  return waiting.length === 0 ? steps : deps.store.getSteps(deploymentId);
}

function outcomeFor(status: DeploymentStatus | undefined, steps: StepRecord[], state: CleanupState): Outcome {
  if (!state.error) return outcomeOf(status, steps.filter((s) => !s.system));
  const system = steps.find((s) => s.system && s.status === 'failed');
  return {
    status: status === 'CANCELLING' ? 'CANCELLED' : 'FAILED',
    error: state.error.Error ?? ErrorName.StepFailed,
    cause: system ? `step "${system.stepId}" failed: ${system.cause}` : readableCause(state.error.Cause),
  };
}

const END_TRANSITION = { SUCCEEDED: 'succeed', FAILED: 'fail', CANCELLED: 'end-cancelled' } as const satisfies Record<Outcome['status'], DeploymentTransitionName>;

/**
 * bastion-close failed for good: whatever the workflow did, the deployment did not end cleanly —
 * the engine's rule may still admit it to the bastion. The user must learn that, and what is open.
 */
function closeFailed(outcome: Outcome, closeError: CaughtError, ruleIds: string[]): Outcome {
  const open = ruleIds.length > 0 ? `the bastion rule ${ruleIds.join(', ')} may still be open` : 'a bastion rule may still be open';
  const why = `${closeError.Error ?? ErrorName.StepFailed}: ${readableCause(closeError.Cause)}`;
  const before = outcome.status === 'SUCCEEDED' ? '' : ` Before that the deployment ended ${outcome.status}: ${outcome.cause ?? 'no cause given'}`;
  return { status: 'FAILED', error: CLEANUP_FAILED, cause: `Closing bastion access failed (${why}); ${open}: delete it by hand.${before}` };
}

/** The bastion rules still on record: bastion-close forgets each one it deletes. */
async function openRuleIds(deps: EngineDeps, deploymentId: string): Promise<string[]> {
  return (await deps.store.listCloudResources(deploymentId)).filter((r) => r.kind === BASTION_RULE).map((r) => r.id);
}

const ENDED_METRIC = {
  SUCCEEDED: Metric.DeploymentsSucceeded,
  FAILED: Metric.DeploymentsFailed,
  CANCELLED: Metric.DeploymentsCancelled,
} as const satisfies Record<Outcome['status'], string>;

/** The record kind the cloud driver gives a bastion rule (see adapters/openstack/marks.ts). */
const BASTION_RULE = 'bastionRule';

/** The error a deployment ends with when its own cleanup could not close the bastion. */
export const CLEANUP_FAILED = 'Ctd.CleanupFailed';

/**
 * The safety net: an execution ended outside Cleanup (stopped from the console, timed out,
 * or the local engine died). Secrets go at once and the deployment records why it ended.
 */
export async function executionEndedOutsideCleanup(
  deps: EngineDeps,
  input: { deploymentId: string; executionStatus: string; reason: string },
): Promise<void> {
  await destroySecrets(deps, input.deploymentId);
  const deployment = await deps.store.getDeployment(input.deploymentId);
  if (!deployment || FINAL_DEPLOYMENT_STATUSES.includes(deployment.status)) return;
  const now = iso(deps.clock);
  const ruleIds = await openRuleIds(deps, input.deploymentId);
  const rule = ruleIds.length > 0 ? ` The bastion rule ${ruleIds.join(', ')} may still be open.` : '';
  // Steps first: a user who sees the deployment final must never see a step still waiting or running.
  for (const step of await deps.store.getSteps(input.deploymentId)) {
    // A Lambda still in flight may release a step meanwhile: follow it until the step is final.
    let status: StepStatus | undefined = step.status;
    for (let tries = 0; tries < 3 && (status === 'waiting' || status === 'running'); tries++) {
      const ended = await deps.store.applyStepTransition(input.deploymentId, step.stepId, {
        name: status === 'running' ? 'abort' : 'skip',
        by: 'safety-net',
        fields: { endedAt: now, cause: input.reason },
      });
      status = ended.applied ? undefined : ended.current;
    }
  }
  const ended = (
    await deps.store.applyDeploymentTransition(input.deploymentId, {
      name: 'execution-ended',
      by: 'safety-net',
      fields: { error: `Ctd.Execution${capitalize(input.executionStatus)}`, cause: `${input.reason}.${rule}`, endedAt: now, updatedAt: now },
    })
  ).applied;
  deps.log('deployment ended outside cleanup', { deploymentId: input.deploymentId, executionStatus: input.executionStatus });
  if (ended) {
    deps.metrics.emit(Metric.DeploymentsFailed, 1);
    if (ruleIds.length > 0) deps.metrics.emit(Metric.BastionRulesOpenAfterDeployment, ruleIds.length);
  }
}

function capitalize(s: string): string {
  return s
    .toLowerCase()
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}
