import { beforeEach, describe, expect, it } from 'vitest';
import { MAX_CLEANUP_ATTEMPTS } from '../../core/config/limits.ts';
import { cancelDeployment } from '../../core/usecases/cancel.ts';
import { deleteSecrets } from '../../core/usecases/finalize.ts';
import { onExecutionEnded, type CleanupInput } from '../../core/usecases/safetyNet.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { memoryDeps } from '../helpers/memoryEngine.ts';

/**
 * The safety net (issue 10, item 2): an execution that ended outside Cleanup — stopped from the
 * console, timed out, failed — gets a cleanup-only execution, so bastion-close runs with the
 * user's token before the secrets go and the deployment ends with a cause the user can read.
 */

const body = {
  name: 'demo',
  bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
  workflow: {
    steps: [
      { id: 'a', action: 'run', command: 'sleep 100' },
      { id: 'b', action: 'run', command: 'true', dependsOn: ['a'] },
    ],
  },
};

describe('Use-case: the safety net (onExecutionEnded)', () => {
  let deps: ReturnType<typeof memoryDeps>;
  let id: string;
  const stopped = (extra: Partial<Parameters<typeof onExecutionEnded>[1]> = {}) =>
    onExecutionEnded(deps, { executionName: id, status: 'ABORTED', input: JSON.stringify({ deploymentId: id }), cause: null, error: null, ...extra });
  const lastStart = () => deps.executions.started.at(-1)!;

  beforeEach(async () => {
    deps = memoryDeps();
    id = (await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body })).deploymentId;
    await deps.store.applyDeploymentTransition(id, { name: 'start', by: 'lambda' });
    await deps.store.applyStepTransition(id, 'a', { name: 'release', by: 'lambda' });
    await deps.store.updateStep(id, 'a', { taskToken: 'task-a', taskArn: 'arn:task/a' });
    await deps.store.recordCloudResource(id, { kind: 'bastionRule', id: 'rule-1', name: 'bastion' });
    deps.executions.started.length = 0;
  });

  it('a stopped execution: running steps aborted and their sandboxes stopped, waiting ones skipped, and a cleanup-only execution started — the secrets stay for its bastion-close', async () => {
    expect(await stopped()).toBe('cleanup-started');
    expect(await deps.store.getStep(id, 'a')).toMatchObject({ status: 'aborted', error: 'Ctd.StepAborted' });
    expect((await deps.store.getStep(id, 'b'))?.status).toBe('skipped');
    expect(deps.sandboxes.stopped).toEqual(['arn:task/a']);
    expect(deps.executions.answers.get('task-a')).toMatchObject({ ok: false, error: 'Ctd.StepAborted' });
    expect(deps.executions.started).toHaveLength(1);
    const { name, input } = lastStart() as { name: string; input: CleanupInput };
    expect(name).toBe(`${id}-cleanup-1`);
    expect(input).toMatchObject({ deploymentId: id, cleanup: { attempt: 1, executionStatus: 'ABORTED' }, error: { Error: 'Ctd.ExecutionAborted' } });
    expect(input.error.Cause).toMatch(/stopped from outside the engine \(StopExecution/);
    expect(await deps.store.getSecrets(id)).toBeDefined();
    expect((await deps.store.getDeployment(id))?.status).toBe('RUNNING');

    // The cleanup execution's DeleteSecrets gets its own input as state: the deployment ends saying why.
    const outcome = await deleteSecrets(deps, id, input);
    expect(outcome).toMatchObject({ status: 'FAILED', error: 'Ctd.ExecutionAborted' });
    const final = await deps.store.getDeployment(id);
    expect(final).toMatchObject({ status: 'FAILED', error: 'Ctd.ExecutionAborted' });
    expect(final?.cause).toMatch(/^the execution was stopped from outside the engine/);
    expect(await deps.store.getSecrets(id)).toBeUndefined();
  });

  it('a cancel after the stop does not hang in CANCELLING: the cleanup execution ends it CANCELLED', async () => {
    await stopped();
    await cancelDeployment(deps, 't1', id);
    expect((await deps.store.getDeployment(id))?.status).toBe('CANCELLING');
    await deleteSecrets(deps, id, (lastStart() as { input: CleanupInput }).input);
    expect((await deps.store.getDeployment(id))?.status).toBe('CANCELLED');
  });

  it('a timed-out execution: the cause says after how long', async () => {
    await onExecutionEnded(deps, { executionName: id, status: 'TIMED_OUT', input: JSON.stringify({ deploymentId: id }), startDate: 1_000, stopDate: 6_000, error: 'States.Timeout' });
    const { input } = lastStart() as { input: CleanupInput };
    expect(input.error).toEqual({ Error: 'Ctd.ExecutionTimedOut', Cause: 'the execution timed out after 5 s, the longest an execution may run' });
  });

  it('an execution whose Cleanup already recorded a final status: only the secrets are deleted again, nothing is started', async () => {
    await deleteSecrets(deps, id, { summary: { status: 'FAILED' } });
    expect(await stopped({ status: 'FAILED' })).toBe('already-final');
    expect(deps.executions.started).toEqual([]);
    expect(await deps.store.getSecrets(id)).toBeUndefined();
  });

  it('a cleanup execution that itself ends outside its end is retried, then the net gives up: FAILED naming the rule that may be open, secrets deleted', async () => {
    await stopped();
    for (let attempt = 1; attempt <= MAX_CLEANUP_ATTEMPTS; attempt++) {
      const { name, input } = lastStart() as { name: string; input: CleanupInput };
      expect(name).toBe(`${id}-cleanup-${attempt}`);
      const result = await onExecutionEnded(deps, { executionName: name, status: 'FAILED', input: JSON.stringify(input), error: 'Ctd.EngineRestarted', cause: 'the engine stopped' });
      expect(result).toBe(attempt < MAX_CLEANUP_ATTEMPTS ? 'cleanup-started' : 'gave-up');
    }
    expect(deps.executions.started).toHaveLength(MAX_CLEANUP_ATTEMPTS);
    const final = await deps.store.getDeployment(id);
    expect(final?.status).toBe('FAILED');
    expect(final?.cause).toMatch(/^the execution was stopped from outside the engine/);
    expect(final?.cause).toContain('then its cleanup execution failed outside Cleanup (Ctd.EngineRestarted): the engine stopped');
    expect(final?.cause).toContain('rule-1 may still be open');
    expect(await deps.store.getSecrets(id)).toBeUndefined();
  });

  it('when no cleanup execution can be started, the net still deletes the secrets and ends the deployment', async () => {
    deps.executions.start = async () => {
      throw Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' });
    };
    expect(await stopped()).toBe('gave-up');
    expect((await deps.store.getDeployment(id))?.status).toBe('FAILED');
    expect(await deps.store.getSecrets(id)).toBeUndefined();
  });

  it('a step a late Lambda of the dead execution releases meanwhile (waiting → running) is aborted, not left running', async () => {
    const apply = deps.store.applyStepTransition.bind(deps.store);
    let raced = false;
    deps.store.applyStepTransition = async (deploymentId, stepId, request) => {
      if (!raced && stepId === 'b' && request.name === 'skip') {
        raced = true;
        await apply(deploymentId, 'b', { name: 'release', by: 'lambda', fields: { taskToken: 'task-b' } });
      }
      return apply(deploymentId, stepId, request);
    };
    await stopped();
    expect(raced).toBe(true);
    expect(await deps.store.getStep(id, 'b')).toMatchObject({ status: 'aborted' });
    expect(deps.executions.answers.get('task-b')).toMatchObject({ ok: false, error: 'Ctd.StepAborted' });
  });
});
