import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERROR_TABLE, ErrorName, HEARTBEAT_INTERVAL_SECONDS, HEARTBEAT_TIMEOUT_SECONDS, PRESTART_LOST } from '../../core/errors.ts';

/**
 * The sandbox states as they must behave on real ECS/Fargate (issue 11): heartbeats sized for a
 * cold start, a lost sandbox retried once, ECS's own faults retried with backoff and full jitter,
 * and the task definition named by family so a deploy cannot break a running execution.
 */

interface Retrier {
  ErrorEquals: string[];
  MaxAttempts?: number;
  IntervalSeconds?: number;
  BackoffRate?: number;
  MaxDelaySeconds?: number;
  JitterStrategy?: string;
}
interface State {
  Type: string;
  Resource?: string;
  HeartbeatSeconds?: number;
  Parameters?: { TaskDefinition?: string };
  Retry?: Retrier[];
}

const asl = JSON.parse(readFileSync(new URL('../../statemachine/deployment.asl.json', import.meta.url), 'utf8')) as {
  States: Record<string, State & Nested & { Branches?: { States: Record<string, State & Nested> }[] }>;
};
/** A Map state: RunWorkflow's batch iterations hold RunBatch, whose iterations are the steps. */
interface Nested {
  ItemProcessor?: { States: Record<string, State & Nested> };
}
/** Top-level states with those of the Parallel's branches (OpenBastionAccess beside RunWorkflow). */
const top = { ...asl.States, ...Object.fromEntries(Object.values(asl.States).flatMap((s) => (s.Branches ?? []).flatMap((b) => Object.entries(b.States)))) };
const states: [string, State][] = [
  ...Object.entries(top),
  ...Object.entries(top.RunWorkflow?.ItemProcessor?.States.RunBatch?.ItemProcessor?.States ?? {}),
];
const sandboxStates = states.filter(([, s]) => s.Resource?.startsWith('arn:aws:states:::ecs:runTask'));

/** How ECS's RunTask faults reach a `.waitForTaskToken` state (sources in each line). */
const ECS_FAULTS = [
  // RunTask's `failures` (no capacity, vCPU quota): Step Functions raises them as AmazonECS.Unknown.
  'AmazonECS.Unknown',
  // EC2 throttling inside RunTask: cdklabs/construct-hub#415, dagster-io/dagster#33439.
  'ECS.InvalidParameterException',
  // ECS's own throttling, e.g. a burst of 40 RunTasks against the 20/s launch rate.
  'ECS.ThrottlingException',
  'ECS.AmazonECSException',
  'ECS.ServerException',
];

describe('State machine: sandbox states on ECS', () => {
  it('are exactly OpenBastionAccess, RunStepInSandbox and CloseBastionAccess', () => {
    expect(sandboxStates.map(([n]) => n).sort()).toEqual(['CloseBastionAccess', 'OpenBastionAccess', 'RunStepInSandbox']);
  });

  it.each(sandboxStates)('%s gives a Fargate cold start time to send its first heartbeat', (_, state) => {
    // RunTask → RUNNING is 30–60 s on Fargate; the first heartbeat comes after that plus the runner's start.
    expect(state.HeartbeatSeconds).toBe(HEARTBEAT_TIMEOUT_SECONDS);
    expect(HEARTBEAT_TIMEOUT_SECONDS).toBeGreaterThanOrEqual(180);
    expect(HEARTBEAT_TIMEOUT_SECONDS).toBeGreaterThanOrEqual(3 * HEARTBEAT_INTERVAL_SECONDS);
  });

  it.each(sandboxStates)('%s retries a lost sandbox once, as the error table says', (_, state) => {
    const policy = ERROR_TABLE.find((p) => p.name === ErrorName.SandboxLost)?.retry;
    expect(policy).toBeDefined();
    const entry = state.Retry?.find((r) => r.ErrorEquals.includes(ErrorName.SandboxLost));
    expect(entry).toMatchObject({ MaxAttempts: policy!.maxAttempts, IntervalSeconds: policy!.intervalSeconds, BackoffRate: policy!.backoffRate });
  });

  it.each(sandboxStates)('%s retries ECS faults with exponential backoff and full jitter', (_, state) => {
    for (const fault of ECS_FAULTS) {
      const entry = state.Retry?.find((r) => r.ErrorEquals.includes(fault));
      expect(entry, fault).toBeDefined();
      expect(entry!.JitterStrategy, fault).toBe('FULL');
      expect(entry!.BackoffRate ?? 2, fault).toBeGreaterThan(1);
      expect(entry!.MaxAttempts ?? 3, fault).toBeGreaterThanOrEqual(5);
      expect(entry!.MaxDelaySeconds, fault).toBeDefined();
    }
  });

  it.each(sandboxStates)('%s names the task definition by family, never by revision', (_, state) => {
    expect(state.Parameters?.TaskDefinition).toBe('${TaskDefinitionFamily}');
  });
});

describe('State machine: a pre-start ECS cannot place falls back to a start at release', () => {
  const inner = Object.fromEntries(states) as Record<string, State & { Catch?: { ErrorEquals: string[]; Next: string }[]; Choices?: unknown[]; Default?: string; Next?: string; TimeoutSeconds?: number }>;
  const run = inner.RunStepInSandbox!;

  it('RunStepInSandbox catches exactly the ECS faults it retries, before any other error, into PrestartFailed', () => {
    const retried = run.Retry!.find((r) => r.ErrorEquals.includes('ECS.ThrottlingException'))!.ErrorEquals;
    expect(run.Catch?.[0]).toMatchObject({ ErrorEquals: retried, Next: 'PrestartFailed' });
    for (const fault of ECS_FAULTS) expect(run.Catch?.[0]?.ErrorEquals, fault).toContain(fault);
    expect(run.Catch?.at(-1)).toMatchObject({ ErrorEquals: ['States.ALL'], Next: 'RecordStepFailure' });
  });

  it('RunStepInSandbox alone catches a pre-started sandbox lost before its release into PrestartFailed, without a retry of its own', () => {
    expect(run.Catch?.find((c) => c.ErrorEquals.includes(PRESTART_LOST))).toMatchObject({ ErrorEquals: [PRESTART_LOST], Next: 'PrestartFailed' });
    expect(run.Retry?.some((r) => r.ErrorEquals.includes(PRESTART_LOST) || r.ErrorEquals.includes('States.ALL'))).toBe(false);
    // Before the catch-all, or the loss would fail the step.
    expect(run.Catch!.findIndex((c) => c.ErrorEquals.includes(PRESTART_LOST))).toBeLessThan(run.Catch!.findIndex((c) => c.ErrorEquals.includes('States.ALL')));
    // The system steps are never pre-started.
    for (const [name, state] of sandboxStates.filter(([n]) => n !== 'RunStepInSandbox')) {
      expect([...(state.Retry ?? []), ...((state as { Catch?: { ErrorEquals: string[] }[] }).Catch ?? [])].flatMap((r) => r.ErrorEquals), name).not.toContain(PRESTART_LOST);
    }
  });

  it('only a pre-started step goes to AwaitRelease; a released one goes to MakeRoom', () => {
    expect(inner.PrestartFailed).toMatchObject({
      Type: 'Choice',
      Choices: [{ And: [{ Variable: '$.release.prestart', IsPresent: true }, { Variable: '$.release.prestart', BooleanEquals: true }], Next: 'AwaitRelease' }],
      Default: 'MakeRoom',
    });
  });

  it("MakeRoom asks AwaitRelease's function to make room, and either starts the step again or fails it with ECS's error", () => {
    const awaitRelease = inner.AwaitRelease as State & { Parameters: { FunctionName: string; Payload: Record<string, unknown> } };
    expect(inner.MakeRoom).toMatchObject({
      Type: 'Task',
      Resource: 'arn:aws:states:::lambda:invoke.waitForTaskToken',
      Parameters: { FunctionName: awaitRelease.Parameters.FunctionName, Payload: { ...awaitRelease.Parameters.Payload, released: true } },
      ResultPath: '$.release',
      Next: 'ShouldRun',
    });
    // Its answer comes within the invocation: no week-long wait as for a release.
    expect(inner.MakeRoom!.TimeoutSeconds).toBeLessThanOrEqual(300);
    // A failed answer (ECS's error, passed on) is caught into RecordStepFailure as RunStepInSandbox's own would be.
    expect(inner.MakeRoom!.Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'RecordStepFailure' }]);
  });

  it('AwaitRelease waits on its own token for the release, then runs the step the normal way', () => {
    expect(inner.AwaitRelease).toMatchObject({ Type: 'Task', Resource: 'arn:aws:states:::lambda:invoke.waitForTaskToken', ResultPath: '$.release', Next: 'ShouldRun' });
    expect(inner.AwaitRelease!.TimeoutSeconds).toBe(inner.AwaitDependencies!.TimeoutSeconds);
    expect(inner.AwaitRelease!.Catch).toEqual([{ ErrorEquals: ['States.ALL'], ResultPath: '$.error', Next: 'RecordStepFailure' }]);
  });
});
