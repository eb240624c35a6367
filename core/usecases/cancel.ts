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
  const moved = await deps.store.updateDeployment(
    deploymentId,
    { status: 'CANCELLING', updatedAt: now, cancelledAt: now },
    { ifStatus: ['PENDING', 'RUNNING'] },
  );
  if (!moved) {
    if (deployment.status === 'CANCELLING') return { deploymentId, status: 'CANCELLING' };
    throw new ConflictError(`deployment ${deploymentId} is ${deployment.status} and can no longer be cancelled`);
  }
  deps.log('deployment cancelling', { deploymentId });
  await settleWaiting(deps, deploymentId);
  const cause = 'the deployment was cancelled by the user';
  for (const step of await deps.store.getSteps(deploymentId)) {
    if (step.status !== 'running' || step.stepId === 'bastion-close') continue;
    const marked = await deps.store.updateStep(
      deploymentId,
      step.stepId,
      { status: 'cancelled', error: ErrorName.Cancelled, cause, endedAt: iso(deps.clock) },
      { ifStatus: ['running'] },
    );
    if (marked) await stopSandbox(deps, step, ErrorName.Cancelled, cause);
  }
  return { deploymentId, status: 'CANCELLING' };
}
