import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { ERROR_TABLE, ErrorName, GRACE_PERIOD_SECONDS, HEARTBEAT_TIMEOUT_SECONDS, PRESTART_LOST } from '../../core/errors.ts';
import { EXECUTION_TIMEOUT_SECONDS, MAX_DEPENDENCY_WAIT_SECONDS, MAX_STEP_TIMEOUT_SECONDS } from '../../core/config/limits.ts';
import { MAX_STEPS } from '../../core/deployment/schema.ts';
import { MAP_BATCH_STEPS, stepBatches } from '../../core/usecases/workflow.ts';

/** Reads statemachine/deployment.asl.json as a file and proves it mirrors the error table. */

interface State {
  Type: string;
  Resource?: string;
  Next?: string;
  End?: boolean;
  TimeoutSeconds?: number;
  TimeoutSecondsPath?: string;
  HeartbeatSeconds?: number;
  Retry?: { ErrorEquals: string[]; MaxAttempts?: number; IntervalSeconds?: number; BackoffRate?: number; MaxDelaySeconds?: number; JitterStrategy?: string }[];
  Catch?: { ErrorEquals: string[]; Next: string }[];
  ItemProcessor?: { StartAt?: string; ProcessorConfig?: { Mode?: string }; States: Record<string, State> };
  ItemsPath?: string;
  ItemSelector?: Record<string, string>;
  Branches?: { StartAt: string; States: Record<string, State> }[];
  MaxConcurrency?: number;
  Default?: string;
  Choices?: { Variable: string; IsPresent?: boolean; Next: string }[];
}

const text = readFileSync(new URL('../../statemachine/deployment.asl.json', import.meta.url), 'utf8');
const asl = JSON.parse(text) as { StartAt: string; TimeoutSeconds?: number; States: Record<string, State> };
/** The top-level states with those of the Parallel's branches (OpenBastionAccess runs beside RunWorkflow). */
const top: Record<string, State> = {
  ...asl.States,
  ...Object.fromEntries(Object.values(asl.States).flatMap((s) => (s.Branches ?? []).flatMap((b) => Object.entries(b.States)))),
};
/** RunWorkflow maps over batches; each batch is the Map RunBatch, whose iterations are the steps. */
const batch = top.RunWorkflow?.ItemProcessor?.States.RunBatch;
const inner = batch?.ItemProcessor?.States ?? {};
const allStates = (): [string, State][] => [...Object.entries(top), ...Object.entries(inner)];

describe('State machine: deployment.asl.json', () => {
  it('is valid according to asl-validator', () => {
    const require = createRequire(import.meta.url);
    // asl-validator ships no types; its default export is (definition) => { isValid, errors }.
    const validate = require('asl-validator') as (d: unknown) => { isValid: boolean; errors: unknown[] };
    const result = validate(structuredClone(asl));
    expect(result.errors).toEqual([]);
    expect(result.isValid).toBe(true);
  });

  it('has the shape of DESIGN.md: Prepare → (OpenBastionAccess → ReleaseRoots ‖ RunWorkflow) → Summarize → Cleanup', () => {
    expect(asl.StartAt).toBe('Start');
    expect(asl.States.Start?.Default).toBe('Prepare');
    expect(asl.States.Prepare?.Next).toBe('OpenAndRun');
    const parallel = asl.States.OpenAndRun!;
    expect(parallel.Type).toBe('Parallel');
    expect(parallel.Branches?.map((b) => b.StartAt)).toEqual(['OpenBastionAccess', 'RunWorkflow']);
    expect(parallel.Next).toBe('Summarize');
    expect(parallel.Catch?.[0]?.Next).toBe('CloseBastionAccess');
    expect(top.OpenBastionAccess?.Next).toBe('ReleaseRoots');
    // bastion-open's failure is recorded (the roots skipped at once), then ends the Parallel with its own error.
    expect(top.OpenBastionAccess?.Catch?.[0]?.Next).toBe('RecordBastionFailure');
    expect(top.RecordBastionFailure?.Next).toBe('BastionOpenFailed');
    expect(top.BastionOpenFailed?.Type).toBe('Fail');
    expect(top.RunWorkflow?.End).toBe(true);
    expect(batch?.End).toBe(true);
    expect(asl.States.Summarize?.Next).toBe('CloseBastionAccess');
    expect(asl.States.CloseBastionAccess?.Next).toBe('DeleteSecrets');
    expect(asl.States.CloseBastionAccess?.Catch?.[0]?.Next).toBe('DeleteSecrets');
    expect(Object.keys(inner)).toEqual(expect.arrayContaining(['AwaitDependencies', 'RunStepInSandbox', 'RecordStepResult', 'RecordStepFailure', 'GracePeriod', 'AbortStragglers']));
  });

  // Issue 12: an inline Map runs at most 40 iterations at once and a waiting step holds its slot, so
  // the 41st step waited for an earlier one to end. Each batch is a Map of its own, with its own 40.
  it('gives every step of the largest workflow its iteration at once: batches of at most 40, each its own inline Map', () => {
    const run = top.RunWorkflow!;
    expect(run.Type).toBe('Map');
    expect(run.ItemsPath).toBe('$.prepared.batches');
    expect(asl.States.Prepare).toMatchObject({ ResultSelector: { 'batches.$': '$.Payload.batches' } });
    expect(run.ItemProcessor?.StartAt).toBe('RunBatch');
    expect(batch?.Type).toBe('Map');
    expect(batch?.ItemsPath).toBe('$.stepIds');
    expect(run.ItemSelector).toEqual({ 'deploymentId.$': '$.deploymentId', 'stepIds.$': '$$.Map.Item.Value' });
    expect(batch?.ItemSelector).toEqual({ 'deploymentId.$': '$.deploymentId', 'stepId.$': '$$.Map.Item.Value' });
    for (const map of [run, batch!]) {
      expect(map.ItemProcessor?.ProcessorConfig?.Mode).toBe('INLINE');
      expect(map.MaxConcurrency).toBeGreaterThan(0);
      expect(map.MaxConcurrency).toBeLessThanOrEqual(40);
    }
    // Every batch fits its Map's slots, and every batch of the largest workflow runs at once.
    expect(MAP_BATCH_STEPS).toBeLessThanOrEqual(batch!.MaxConcurrency!);
    const largest = stepBatches(Array.from({ length: MAX_STEPS }, (_, i) => `s${i}`));
    expect(largest.length).toBeLessThanOrEqual(run.MaxConcurrency!);
    expect(largest.flat()).toEqual(Array.from({ length: MAX_STEPS }, (_, i) => `s${i}`));
    expect(Object.keys(inner)[0]).toBe('AwaitDependencies');
  });

  // The runner answers a sandbox's task token with an error table name, whatever the step's action.
  const sandboxStates = allStates().filter(([, state]) => state.Type === 'Task' && state.Resource?.includes('ecs:runTask'));

  it('finds the sandbox states that meet table errors', () => {
    expect(sandboxStates.map(([name]) => name)).toEqual(expect.arrayContaining(['OpenBastionAccess', 'RunStepInSandbox', 'CloseBastionAccess']));
  });

  it.each(sandboxStates.map(([name]) => name))('%s retries exactly as the error table says', (name) => {
    const state = allStates().find(([n]) => n === name)![1];
    const retry = state.Retry ?? [];
    for (const policy of ERROR_TABLE) {
      // Step Functions uses the first retrier that matches; a wildcard before ours would win.
      const entry = retry.find((r) => r.ErrorEquals.some((e) => e === policy.name || e === 'States.ALL' || e === 'States.TaskFailed'));
      if (!policy.retry) {
        expect(entry, `${name}: ${policy.name} must not be retried`).toBeUndefined();
        continue;
      }
      expect(entry, `${name}: ${policy.name} needs a Retry`).toBeDefined();
      expect({ MaxAttempts: entry?.MaxAttempts, IntervalSeconds: entry?.IntervalSeconds, BackoffRate: entry?.BackoffRate }, `${name}: ${policy.name}`).toEqual({
        MaxAttempts: policy.retry.maxAttempts,
        IntervalSeconds: policy.retry.intervalSeconds,
        BackoffRate: policy.retry.backoffRate,
      });
    }
    expect(state.Catch?.some((c) => c.ErrorEquals.includes('States.ALL')), `${name} catches what it does not retry`).toBe(true);
  });

  // Lambda tasks never meet a table error: the engine's use-cases throw plain errors, and the tokens
  // of AwaitDependencies and GracePeriod are only ever answered with success (core/usecases/release.ts).
  it('leaves table errors to the sandbox states: no Lambda task names one', () => {
    for (const [name, state] of allStates()) {
      if (state.Type !== 'Task' || !state.Resource?.includes(':lambda:')) continue;
      const named = [...(state.Retry ?? []), ...(state.Catch ?? [])].flatMap((r) => r.ErrorEquals).filter((e) => e.startsWith('Ctd.'));
      expect(named, name).toEqual([]);
    }
  });

  // DESIGN.md's table, restated: the ASL and core/errors.ts must not drift together from it.
  it('keeps the error table at the values DESIGN.md gives', () => {
    const table = Object.fromEntries(ERROR_TABLE.map((p) => [p.name, p.retry ? { maxAttempts: p.retry.maxAttempts, ...(p.retry.maxAttempts > 1 ? { intervalSeconds: p.retry.intervalSeconds, backoffRate: p.retry.backoffRate } : {}) } : 'no retry']));
    expect(table).toEqual({
      [ErrorName.ProvisioningError]: { maxAttempts: 1 },
      [ErrorName.BackendUnreachable]: { maxAttempts: 5, intervalSeconds: 10, backoffRate: 1 },
      // Not in DESIGN.md's table: a lost sandbox is infrastructure, retried once (docs/ARCHITECTURE.md, issue 11).
      [ErrorName.SandboxLost]: { maxAttempts: 1 },
      [ErrorName.VmBootstrapTimeout]: 'no retry',
      [ErrorName.AnsibleUnreachable]: { maxAttempts: 1 },
      [ErrorName.StepFailed]: 'no retry',
      [ErrorName.StepAborted]: 'no retry',
      [ErrorName.Cancelled]: 'no retry',
    });
  });

  it('runs every sandbox with a heartbeat and every Task with an explicit time limit', () => {
    for (const [name, state] of allStates()) {
      if (state.Type !== 'Task') continue;
      expect(state.TimeoutSeconds ?? state.TimeoutSecondsPath, `${name} lacks TimeoutSeconds`).toBeDefined();
      if (state.Resource?.includes('ecs:runTask')) expect(state.HeartbeatSeconds, name).toBe(HEARTBEAT_TIMEOUT_SECONDS);
    }
    expect(inner.GracePeriod?.TimeoutSeconds).toBe(GRACE_PERIOD_SECONDS);
  });

  // Issue 10 item 11: a throttled GracePeriod used to end the grace at once and abort the running steps.
  const LAMBDA_ERRORS = ['Lambda.ServiceException', 'Lambda.AWSLambdaException', 'Lambda.SdkClientException', 'Lambda.TooManyRequestsException'];
  it('retries every Lambda task on Lambda service errors, GracePeriod with jitter and a bounded total delay', () => {
    for (const [name, state] of allStates()) {
      if (state.Type !== 'Task' || !state.Resource?.includes(':lambda:')) continue;
      const retry = state.Retry?.find((r) => r.ErrorEquals.includes('States.ALL') || LAMBDA_ERRORS.every((e) => r.ErrorEquals.includes(e)));
      expect(retry, `${name} does not retry Lambda service errors`).toBeDefined();
    }
    const grace = inner.GracePeriod?.Retry?.find((r) => r.ErrorEquals.includes('Lambda.TooManyRequestsException'));
    expect(grace).toMatchObject({ JitterStrategy: 'FULL', BackoffRate: 2 });
    // Each attempt restarts the Task's timer: the grace may overrun its deadline by at most the retry delays.
    let total = 0;
    for (let i = 0; i < (grace?.MaxAttempts ?? 0); i++) total += Math.min((grace?.IntervalSeconds ?? 1) * (grace?.BackoffRate ?? 1) ** i, grace?.MaxDelaySeconds ?? Infinity);
    expect(total).toBeLessThanOrEqual(GRACE_PERIOD_SECONDS / 20);
  });

  it('catches every failure: top-level states lead to Cleanup, iterations catch their own errors', () => {
    const cleanup = new Set(['CloseBastionAccess', 'DeleteSecrets', 'CleanupFailed']);
    for (const [name, state] of Object.entries(asl.States)) {
      if (state.Type !== 'Task' && state.Type !== 'Map') continue;
      const all = state.Catch?.find((c) => c.ErrorEquals.includes('States.ALL'));
      expect(all, `${name} has no States.ALL Catch`).toBeDefined();
      expect(cleanup.has(all!.Next), `${name} catches to ${all!.Next}`).toBe(true);
    }
    for (const [name, state] of Object.entries(inner)) {
      if (state.Type === 'Task') expect(state.Catch?.some((c) => c.ErrorEquals.includes('States.ALL')), name).toBe(true);
    }
  });

  it('names only errors of the error table (or AWS\'s own, or the pre-start\'s signal) in its Retry and Catch blocks', () => {
    const ours = new Set<string>([...Object.values(ErrorName), PRESTART_LOST]);
    for (const [name, state] of allStates()) {
      for (const e of [...(state.Retry ?? []), ...(state.Catch ?? [])].flatMap((r) => r.ErrorEquals)) {
        if (e.startsWith('Ctd.')) expect(ours.has(e), `${name}: unknown error ${e}`).toBe(true);
        else expect(e, name).toMatch(/^(States|Lambda|ECS|AmazonECS)\./);
      }
    }
  });

  describe('an execution has an upper bound, and one that ended outside Cleanup can run Cleanup alone', () => {
    /** Worst case of one Task state: every attempt (1 + every retrier's MaxAttempts) at its timeout, plus the retry intervals. */
    const worst = (state: State, timeout = state.TimeoutSeconds ?? 0): number => {
      const retries = state.Retry ?? [];
      const attempts = 1 + retries.reduce((n, r) => n + (r.MaxAttempts ?? 3), 0);
      const intervals = retries.reduce((sum, r) => {
        let total = 0;
        for (let i = 0; i < (r.MaxAttempts ?? 3); i++) total += Math.min((r.IntervalSeconds ?? 1) * (r.BackoffRate ?? 2) ** i, (r as { MaxDelaySeconds?: number }).MaxDelaySeconds ?? Infinity);
        return sum + total;
      }, 0);
      return attempts * timeout + intervals;
    };

    it('TimeoutSeconds is EXECUTION_TIMEOUT_SECONDS, at least the longest legal run derived from the states, under the one-year cap', () => {
      expect(asl.TimeoutSeconds).toBe(EXECUTION_TIMEOUT_SECONDS);
      const s = top;
      // Every iteration starts at once (the test above), so one dependency wait bounds them all.
      const rounds = Math.ceil(Math.ceil(MAX_STEPS / MAP_BATCH_STEPS) / (s.RunWorkflow!.MaxConcurrency ?? 40)) * Math.ceil(MAP_BATCH_STEPS / (batch!.MaxConcurrency ?? 40));
      expect(rounds).toBe(1);
      // A step's sandbox attempts are retried only on Ctd.* errors; ECS's RunTask errors fail before the step runs.
      const run = inner.RunStepInSandbox!;
      const stepRuns = { ...run, Retry: run.Retry?.filter((r) => r.ErrorEquals.every((e) => e.startsWith('Ctd.'))) };
      // A pre-started step whose RunTask ECS refused for good: the ECS retries' waits, then AwaitRelease waits for the
      // same event AwaitDependencies would have (its dependencies' end), under the same bound: one wait in all.
      const refusedPrestart = worst({ ...run, Retry: run.Retry?.filter((r) => !r.ErrorEquals.every((e) => e.startsWith('Ctd.'))) }, 0);
      expect(inner.AwaitRelease!.TimeoutSeconds).toBe(inner.AwaitDependencies!.TimeoutSeconds);
      const iteration =
        (inner.AwaitDependencies!.TimeoutSeconds ?? 0) +
        refusedPrestart +
        worst(stepRuns, MAX_STEP_TIMEOUT_SECONDS) +
        worst(inner.RecordStepFailure!) +
        (inner.GracePeriod!.TimeoutSeconds ?? 0) +
        worst(inner.AbortStragglers!);
      const around = ['Prepare', 'OpenBastionAccess', 'ReleaseRoots', 'RecordBastionFailure', 'Summarize', 'CloseBastionAccess', 'DeleteSecrets'].reduce((sum, name) => sum + worst(s[name]!), 0);
      const bound = rounds * iteration + around;
      expect(inner.AwaitDependencies!.TimeoutSeconds).toBe(MAX_DEPENDENCY_WAIT_SECONDS);
      expect(EXECUTION_TIMEOUT_SECONDS).toBeGreaterThanOrEqual(bound);
      // Not padded beyond a day of rounding: the secrets' TTL is sized from it.
      expect(EXECUTION_TIMEOUT_SECONDS - bound).toBeLessThan(86_400);
      expect(EXECUTION_TIMEOUT_SECONDS).toBeLessThanOrEqual(365 * 86_400);
    });

    it('a cleanup-only input goes straight to CloseBastionAccess; every other input starts at Prepare', () => {
      const start = asl.States.Start!;
      expect(start.Type).toBe('Choice');
      expect(start.Choices).toEqual([{ Variable: '$.cleanup', IsPresent: true, Next: 'CloseBastionAccess' }]);
      expect(start.Default).toBe('Prepare');
    });
  });
});
