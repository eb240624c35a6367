import { readFileSync } from 'node:fs';
import { beforeEach, describe, expect, it } from 'vitest';
import { ErrorName } from '../../core/errors.ts';
import { DEFAULT_PRESTART_MAX_IDLE_SECONDS } from '../../core/usecases/deps.ts';
import { BASTION_OPEN_WORST_CASE_SECONDS } from '../../core/usecases/release.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { awaitDependencies, recordStepFailure, recordStepResult } from '../../core/usecases/workflow.ts';
import { memoryDeps } from '../helpers/memoryEngine.ts';

/** The workflow's roots wait on bastion-open, which runs beside the Map (issue 12), on in-memory ports. */

const deployment = {
  name: 'roots',
  bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
  workflow: {
    steps: [
      { id: 'r1', action: 'run', command: 'true', timeoutSeconds: 100 },
      { id: 'r2', action: 'run', command: 'true', timeoutSeconds: 100 },
      { id: 'r3', action: 'run', command: 'true', timeoutSeconds: 100 },
      { id: 'next', action: 'run', command: 'true', timeoutSeconds: 100, dependsOn: ['r1'] },
    ],
  },
};

describe('Use-case: roots wait on bastion-open', () => {
  let deps: ReturnType<typeof memoryDeps>;
  let id: string;
  const step = (stepId: string) => deps.store.getStep(id, stepId);
  const answer = (token: string) => deps.executions.answers.get(token);
  /** bastion-open's runner: `start-system` (a retry starts again from `failed`), then its outcome. */
  const bastion = {
    start: (attempt: number) =>
      deps.store.applyStepTransition(id, 'bastion-open', { name: 'start-system', by: 'runner', ifAttempt: attempt - 1, fields: { attempt, startedAt: new Date(deps.clock.now()).toISOString() } }),
    succeed: () => deps.store.applyStepTransition(id, 'bastion-open', { name: 'system-succeed', by: 'runner', fields: { endedAt: new Date(deps.clock.now()).toISOString() } }),
    fail: (cause: string) =>
      deps.store.applyStepTransition(id, 'bastion-open', { name: 'system-fail', by: 'runner', fields: { endedAt: new Date(deps.clock.now()).toISOString(), error: ErrorName.ProvisioningError, cause } }),
  };

  const submit = async (prestart: { maxWaiting: number } | undefined) => {
    deps = { ...memoryDeps(), ...(prestart ? { prestart } : {}) };
    id = (await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: deployment })).deploymentId;
  };

  describe('with pre-start', () => {
    beforeEach(() => submit({ maxWaiting: 2 }));

    it('pre-start while bastion-open has not even claimed its step, within the cap, and are released only by its success', async () => {
      for (const r of ['r1', 'r2', 'r3']) await awaitDependencies(deps, { deploymentId: id, stepId: r, taskToken: `t-${r}` });
      // bastion-open is still `waiting` (its sandbox launched beside the Map): the roots' sandboxes start now...
      expect((await step('bastion-open'))?.status).toBe('waiting');
      // ...with a limit covering bastion-open's worst case plus their own, and only as many as the cap.
      expect(answer('t-r1')).toEqual({ ok: true, output: { run: true, prestart: true, timeoutSeconds: 100 + BASTION_OPEN_WORST_CASE_SECONDS, maxIdleSeconds: DEFAULT_PRESTART_MAX_IDLE_SECONDS } });
      expect(answer('t-r2')).toMatchObject({ ok: true, output: { prestart: true } });
      expect(answer('t-r3')).toBeUndefined();
      expect((await step('r1'))?.status).toBe('waiting');

      // A failed attempt that the state machine retries is not the end: nothing is skipped.
      await bastion.start(1);
      await bastion.fail('HTTP 503');
      await awaitDependencies(deps, { deploymentId: id, stepId: 'next', taskToken: 't-next' });
      expect((await step('r1'))?.status).toBe('waiting');
      await bastion.start(2);
      await bastion.succeed();
      // Nothing releases the roots but ReleaseRoots (RecordStepResult for bastion-open) or their own registration.
      expect((await step('r1'))?.status).toBe('waiting');
      await recordStepResult(deps, { deploymentId: id, stepId: 'bastion-open' });
      expect((await step('r1'))?.status).toBe('running');
      expect((await step('r2'))?.status).toBe('running');
      // r3 never pre-started (the cap): its own token is answered with a plain release.
      expect(answer('t-r3')).toEqual({ ok: true, output: { run: true, timeoutSeconds: 100 } });
      expect((await step('bastion-open'))?.status).toBe('succeeded');
    });

    it('are skipped when bastion-open fails for good, their waiting sandboxes answered and stopped, with a cause naming bastion-open', async () => {
      for (const r of ['r1', 'r2', 'r3']) await awaitDependencies(deps, { deploymentId: id, stepId: r, taskToken: `t-${r}` });
      // r1's sandbox came up and registered (as sandbox/runner.ts does).
      await deps.store.updateStep(id, 'r1', { taskToken: 'box1', taskArn: 'task/r1', readyAt: new Date(deps.clock.now()).toISOString() }, { ifStatus: ['waiting'] });
      await bastion.start(1);
      await bastion.fail('security group rule refused (HTTP 403)');
      // RecordBastionFailure: OpenBastionAccess's Catch, once the retries are spent.
      await recordStepFailure(deps, { deploymentId: id, stepId: 'bastion-open', error: { Error: ErrorName.ProvisioningError, Cause: 'security group rule refused (HTTP 403)' } });
      for (const r of ['r1', 'r2', 'r3']) {
        const s = await step(r);
        expect(s?.status, r).toBe('skipped');
        expect(s?.cause).toBe('not started: bastion access could not be opened (step "bastion-open" failed: security group rule refused (HTTP 403))');
      }
      expect(answer('box1')).toMatchObject({ ok: true, output: { skipped: expect.stringContaining('bastion-open') } });
      expect(deps.sandboxes.stopped).toEqual(['task/r1']);
      expect(answer('t-r3')).toMatchObject({ ok: true, output: { run: false } });
      // The runner's own record of bastion-open stands.
      expect((await step('bastion-open'))?.cause).toBe('security group rule refused (HTTP 403)');
    });
  });

  describe('without pre-start', () => {
    beforeEach(() => submit(undefined));

    it('simply wait until bastion-open succeeded', async () => {
      await awaitDependencies(deps, { deploymentId: id, stepId: 'r1', taskToken: 't-r1' });
      expect(answer('t-r1')).toBeUndefined();
      await bastion.start(1);
      await bastion.succeed();
      await recordStepResult(deps, { deploymentId: id, stepId: 'bastion-open' });
      expect(answer('t-r1')).toEqual({ ok: true, output: { run: true, timeoutSeconds: 100 } });
      // A root registering after that is released at once.
      await awaitDependencies(deps, { deploymentId: id, stepId: 'r2', taskToken: 't-r2' });
      expect(answer('t-r2')).toEqual({ ok: true, output: { run: true, timeoutSeconds: 100 } });
    });
  });
});

describe('BASTION_OPEN_WORST_CASE_SECONDS', () => {
  interface Retrier {
    MaxAttempts?: number;
    IntervalSeconds?: number;
    BackoffRate?: number;
    MaxDelaySeconds?: number;
  }
  interface State {
    TimeoutSeconds?: number;
    Retry?: Retrier[];
    Branches?: { States: Record<string, State> }[];
  }
  it('covers OpenBastionAccess in the ASL: every attempt at its timeout, every retrier spent, with its waits', () => {
    const asl = JSON.parse(readFileSync(new URL('../../statemachine/deployment.asl.json', import.meta.url), 'utf8')) as { States: Record<string, State> };
    const open = Object.values(asl.States).flatMap((s) => s.Branches ?? []).find((b) => b.States.OpenBastionAccess)!.States.OpenBastionAccess!;
    const retries = open.Retry ?? [];
    const attempts = 1 + retries.reduce((n, r) => n + (r.MaxAttempts ?? 3), 0);
    let waits = 0;
    for (const r of retries) {
      for (let i = 0; i < (r.MaxAttempts ?? 3); i++) waits += Math.min((r.IntervalSeconds ?? 1) * (r.BackoffRate ?? 2) ** i, r.MaxDelaySeconds ?? Infinity);
    }
    expect(BASTION_OPEN_WORST_CASE_SECONDS).toBeGreaterThanOrEqual(attempts * (open.TimeoutSeconds ?? 0) + waits);
  });
});
