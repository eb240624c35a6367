import { describe, expect, it } from 'vitest';
import { ErrorName } from '../../core/errors.ts';
import { CLEANUP_FAILED, deleteSecrets, executionEndedOutsideCleanup } from '../../core/usecases/finalize.ts';
import { getDeployment } from '../../core/usecases/queries.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { memoryDeps } from '../helpers/memoryEngine.ts';

const body = {
  name: 'demo',
  bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
  workflow: { steps: [{ id: 'a', action: 'run', command: 'true' }] },
};

const closeError = { Error: ErrorName.BackendUnreachable, Cause: 'The backend server is unreachable (deleting rule r-1: HTTP 502)' };

async function ended(stepStatus: 'succeeded' | 'failed') {
  const deps = memoryDeps();
  const { deploymentId } = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body });
  await deps.store.applyDeploymentTransition(deploymentId, { name: 'start', by: 'lambda' });
  await deps.store.recordCloudResource(deploymentId, { kind: 'bastionRule', id: 'r-1', name: 'bastion' });
  await deps.store.applyStepTransition(deploymentId, 'a', { name: 'release', by: 'lambda' });
  await deps.store.applyStepTransition(deploymentId, 'a', {
    name: stepStatus === 'failed' ? 'fail' : 'succeed',
    by: 'lambda',
    fields: { endedAt: '2026-11-26T12:00:10Z', ...(stepStatus === 'failed' ? { error: ErrorName.StepFailed, cause: 'exit code 3' } : {}) },
  });
  return { deps, deploymentId };
}

describe('Use-case: deleteSecrets after bastion-close failed', () => {
  it('ends a deployment whose steps all succeeded FAILED, naming the rule that may still be open', async () => {
    const { deps, deploymentId } = await ended('succeeded');
    const outcome = await deleteSecrets(deps, deploymentId, { summary: { status: 'SUCCEEDED' }, closeError });
    expect(outcome.status).toBe('FAILED');
    expect(outcome.error).toBe(CLEANUP_FAILED);
    expect(outcome.cause).toContain('the bastion rule r-1 may still be open');
    expect(outcome.cause).toContain('Ctd.BackendUnreachable: The backend server is unreachable');
    const record = await getDeployment(deps, 't1', deploymentId);
    expect(record).toMatchObject({ status: 'FAILED', error: CLEANUP_FAILED });
    expect(await deps.store.getSecrets(deploymentId)).toBeUndefined();
  });

  it('keeps the workflow failure in the cause beside the cleanup failure', async () => {
    const { deps, deploymentId } = await ended('failed');
    const outcome = await deleteSecrets(deps, deploymentId, { summary: { status: 'FAILED' }, closeError });
    expect(outcome.error).toBe(CLEANUP_FAILED);
    expect(outcome.cause).toMatch(/may still be open.*Before that the deployment ended FAILED: step "a" failed: exit code 3/);
  });

  it('without a close error, a clean run still succeeds', async () => {
    const { deps, deploymentId } = await ended('succeeded');
    expect((await deleteSecrets(deps, deploymentId, { summary: { status: 'SUCCEEDED' } })).status).toBe('SUCCEEDED');
  });
});

/**
 * The endings matrix found a cancelled deployment whose view already said CANCELLED while a step
 * still said `waiting`: the end decided the never-reached steps only after the final status.
 */
describe('Use-case: a deployment turns final only once every step has', () => {
  const twoSteps = { ...body, workflow: { steps: [{ id: 'a', action: 'run', command: 'true' }, { id: 'b', action: 'run', command: 'true', dependsOn: ['a'] }] } };

  /** The step statuses at the moment the deployment's final status is written. */
  function watchFinal(deps: ReturnType<typeof memoryDeps>, deploymentId: string): string[][] {
    const seen: string[][] = [];
    const apply = deps.store.applyDeploymentTransition.bind(deps.store);
    deps.store.applyDeploymentTransition = async (id, request) => {
      if (['succeed', 'fail', 'end-cancelled', 'execution-ended'].includes(request.name)) {
        seen.push((await deps.store.getSteps(deploymentId)).map((s) => `${s.stepId} ${s.status}`).sort());
      }
      return apply(id, request);
    };
    return seen;
  }

  it('cancelled during bastion-open: the steps the workflow never reached are cancelled before the deployment is CANCELLED', async () => {
    const deps = memoryDeps();
    const { deploymentId } = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: twoSteps });
    await deps.store.applyDeploymentTransition(deploymentId, { name: 'start', by: 'lambda' });
    await deps.store.applyDeploymentTransition(deploymentId, { name: 'cancel', by: 'cancel' });
    // bastion-close ran; bastion-open's runner refused before it claimed the step (the cancel came first).
    await deps.store.applyStepTransition(deploymentId, 'bastion-close', { name: 'start-system', by: 'runner' });
    await deps.store.applyStepTransition(deploymentId, 'bastion-close', { name: 'system-succeed', by: 'runner' });
    const seen = watchFinal(deps, deploymentId);
    const outcome = await deleteSecrets(deps, deploymentId, { error: { Error: ErrorName.Cancelled, Cause: 'the deployment was cancelled' } });
    expect(outcome.status).toBe('CANCELLED');
    expect(seen).toEqual([['a cancelled', 'b cancelled', 'bastion-close succeeded', 'bastion-open cancelled']]);
  });

  it('ended outside Cleanup (the safety net gave up): running steps aborted and waiting ones skipped before the deployment is FAILED', async () => {
    const deps = memoryDeps();
    const { deploymentId } = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: twoSteps });
    await deps.store.applyDeploymentTransition(deploymentId, { name: 'start', by: 'lambda' });
    await deps.store.applyStepTransition(deploymentId, 'a', { name: 'release', by: 'lambda' });
    const seen = watchFinal(deps, deploymentId);
    await executionEndedOutsideCleanup(deps, { deploymentId, executionStatus: 'ABORTED', reason: 'the execution was stopped' });
    expect((await deps.store.getDeployment(deploymentId))?.status).toBe('FAILED');
    expect(seen).toEqual([['a aborted', 'b skipped', 'bastion-close skipped', 'bastion-open skipped']]);
  });
});
