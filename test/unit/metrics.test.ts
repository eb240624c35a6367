import { describe, expect, it } from 'vitest';
import { ErrorName } from '../../core/errors.ts';
import { Metric, type MetricDimensions, type MetricName } from '../../core/metrics.ts';
import { deleteSecrets, executionEndedOutsideCleanup } from '../../core/usecases/finalize.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { awaitDependencies, recordStepFailure } from '../../core/usecases/workflow.ts';
import { memoryDeps } from '../helpers/memoryEngine.ts';

/** The use-cases' metrics through core's port: what is counted, with which dimensions, and how often. */

const body = {
  name: 'demo',
  bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
  workflow: { steps: [{ id: 'a', action: 'run', command: 'true' }] },
};

async function succeedStep(deps: ReturnType<typeof memoryDeps>, deploymentId: string, stepId: string) {
  await deps.store.applyStepTransition(deploymentId, stepId, { name: 'release', by: 'lambda' });
  await deps.store.applyStepTransition(deploymentId, stepId, { name: 'succeed', by: 'lambda', fields: { endedAt: '2026-11-26T12:00:10Z' } });
}

async function running() {
  const emitted: { name: MetricName; value: number; dimensions?: MetricDimensions }[] = [];
  const deps = memoryDeps();
  deps.metrics = { emit: (name, value, dimensions) => void emitted.push({ name, value, ...(dimensions ? { dimensions } : {}) }) };
  const { deploymentId } = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body });
  await deps.store.applyDeploymentTransition(deploymentId, { name: 'start', by: 'lambda' });
  return { deps, deploymentId, emitted };
}

describe('Metrics of the use-cases', () => {
  it('counts a submitted deployment as started, and not again on an Idempotency-Key replay', async () => {
    const { deps, emitted } = await running();
    expect(emitted).toEqual([{ name: Metric.DeploymentsStarted, value: 1 }]);
    await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body, idempotencyKey: 'k1' });
    await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body, idempotencyKey: 'k1' });
    expect(emitted.filter((e) => e.name === Metric.DeploymentsStarted)).toHaveLength(2);
  });

  it('counts a failed bastion-close as a failed deployment with its open rules, once however often DeleteSecrets runs', async () => {
    const { deps, deploymentId, emitted } = await running();
    await deps.store.recordCloudResource(deploymentId, { kind: 'bastionRule', id: 'r-1', name: 'bastion' });
    await deps.store.recordCloudResource(deploymentId, { kind: 'bastionRule', id: 'r-2', name: 'bastion' });
    await succeedStep(deps, deploymentId, 'a');
    const state = { summary: { status: 'SUCCEEDED' }, closeError: { Error: ErrorName.BackendUnreachable, Cause: 'HTTP 502' } };
    await deleteSecrets(deps, deploymentId, state);
    await deleteSecrets(deps, deploymentId, state);
    expect(emitted.slice(1)).toEqual([
      { name: Metric.DeploymentsFailed, value: 1 },
      { name: Metric.BastionRulesOpenAfterDeployment, value: 2 },
    ]);
  });

  it('counts a cancelled and a succeeded deployment under their own names', async () => {
    const a = await running();
    await a.deps.store.applyDeploymentTransition(a.deploymentId, { name: 'cancel', by: 'cancel' });
    await deleteSecrets(a.deps, a.deploymentId, { summary: { status: 'CANCELLED' } });
    expect(a.emitted.at(-1)).toEqual({ name: Metric.DeploymentsCancelled, value: 1 });
    const b = await running();
    await succeedStep(b.deps, b.deploymentId, 'a');
    await deleteSecrets(b.deps, b.deploymentId, { summary: { status: 'SUCCEEDED' } });
    expect(b.emitted.at(-1)).toEqual({ name: Metric.DeploymentsSucceeded, value: 1 });
  });

  it('counts a RunTask that failed after its retries (ECS throttling) as a sandbox launch failure, and a user\'s failure not', async () => {
    const { deps, deploymentId, emitted } = await running();
    await awaitDependencies(deps, { deploymentId, stepId: 'a', taskToken: 'await-a' });
    await recordStepFailure(deps, { deploymentId, stepId: 'a', error: { Error: 'ECS.ThrottlingException', Cause: 'Rate exceeded' } });
    expect(emitted.filter((e) => e.name === Metric.SandboxLaunchFailures)).toEqual([{ name: Metric.SandboxLaunchFailures, value: 1 }]);
    const other = await running();
    await awaitDependencies(other.deps, { deploymentId: other.deploymentId, stepId: 'a', taskToken: 'await-a' });
    await recordStepFailure(other.deps, { deploymentId: other.deploymentId, stepId: 'a', error: { Error: ErrorName.StepFailed, Cause: 'exit code 3' } });
    expect(other.emitted.filter((e) => e.name === Metric.SandboxLaunchFailures)).toEqual([]);
  });

  it('counts an execution that ended outside Cleanup as failed, once', async () => {
    const { deps, deploymentId, emitted } = await running();
    const input = { deploymentId, executionStatus: 'TIMED_OUT', reason: 'the execution timed out' };
    await executionEndedOutsideCleanup(deps, input);
    await executionEndedOutsideCleanup(deps, input);
    expect(emitted.slice(1)).toEqual([{ name: Metric.DeploymentsFailed, value: 1 }]);
  });
});
