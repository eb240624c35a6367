import type { CancelResponse } from '../api.ts';
import { ConflictError, ErrorName } from '../errors.ts';
import { iso, type EngineDeps } from './deps.ts';
import { ownDeployment } from './queries.ts';
import { settleWaiting } from './release.ts';
import { stopSandbox } from './workflow.ts';

/**
 * Cancel stops the work, not the execution: steps not started are skipped, running sandboxes
 * are failed with Ctd.Cancelled and stopped, and the state machine goes on to Cleanup, so
 * the bastion rule is closed and the secrets are deleted as in every other outcome.
 */
export async function cancelDeployment(deps: EngineDeps, tenantId: string, deploymentId: string): Promise<CancelResponse> {
  const deployment = await ownDeployment(deps, tenantId, deploymentId);
  const now = iso(deps.clock);
  const moved = await deps.store.applyDeploymentTransition(deploymentId, {
    name: 'cancel',
    by: 'cancel',
    fields: { updatedAt: now, cancelledAt: now },
  });
  if (!moved.applied) {
    const current = moved.current ?? deployment.status;
    if (current === 'CANCELLING') return { deploymentId, status: 'CANCELLING' };
    throw new ConflictError(`deployment ${deploymentId} is ${current} and can no longer be cancelled`);
  }
  deps.log('deployment cancelling', { deploymentId });
  await settleWaiting(deps, deploymentId, 'cancel');
  const cause = 'the deployment was cancelled by the user';
  for (const step of await deps.store.getSteps(deploymentId)) {
    if (step.status !== 'running' || step.stepId === 'bastion-close') continue;
    const marked = await deps.store.applyStepTransition(deploymentId, step.stepId, {
      name: 'cancel-running',
      by: 'cancel',
      fields: { error: ErrorName.Cancelled, cause, endedAt: iso(deps.clock) },
    });
    // Lost to the step's own ending (or the grace period's abort): its sandbox is already done.
    if (marked.applied) await stopSandbox(deps, step, ErrorName.Cancelled, cause);
  }
  return { deploymentId, status: 'CANCELLING' };
}
