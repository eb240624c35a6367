import { beforeEach, describe, expect, it } from 'vitest';
import { deleteSecrets } from '../../core/usecases/finalize.ts';
import { expectedReleaseAt, observedStartMs, stepDurations } from '../../core/usecases/lookahead.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { awaitDependencies, prepare, recordStepResult } from '../../core/usecases/workflow.ts';
import type { StepRecord } from '../../core/model.ts';
import { bastionOpened, memoryDeps } from '../helpers/memoryEngine.ts';

/**
 * Pre-start by time (issue 12): with the durations of the tenant's last run of the same deployment, a
 * sandbox starts no earlier than one start before its step's expected release; without them, as far as the cap.
 */

const chain = (n: number) => ({
  name: 'chain',
  bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
  workflow: {
    steps: Array.from({ length: n }, (_, i) => ({ id: `s${i + 1}`, action: 'run', command: 'true', ...(i > 0 ? { dependsOn: [`s${i}`] } : {}) })),
  },
});

describe('Use-case: pre-start looks ahead by time', () => {
  let deps: ReturnType<typeof memoryDeps>;
  let t: number;
  const answer = (token: string) => deps.executions.answers.get(token);

  beforeEach(() => {
    t = Date.parse('2026-11-30T09:00:00Z');
    // A clock the test moves: each step of the first run takes exactly what the test says.
    deps = { ...memoryDeps(), clock: { now: () => t }, prestart: { maxWaiting: 10, startSeconds: 60 } };
  });

  /** A whole run of the 5-step chain, each step `stepSeconds` long, ended. */
  async function finishedRun(stepSeconds: number, tenantId = 't1'): Promise<string> {
    const { deploymentId } = await submitDeployment(deps, { tenantId, token: `tok-${tenantId}`, body: chain(5) });
    await prepare(deps, deploymentId);
    await bastionOpened(deps, deploymentId);
    for (let i = 1; i <= 5; i++) {
      await awaitDependencies(deps, { deploymentId, stepId: `s${i}`, taskToken: `${deploymentId}-s${i}` });
      t += stepSeconds * 1000;
      await recordStepResult(deps, { deploymentId, stepId: `s${i}` });
    }
    await deleteSecrets(deps, deploymentId, {});
    return deploymentId;
  }

  /** The next run of the chain: prepared, bastion open, every step registered. */
  async function nextRun(tenantId = 't1'): Promise<string> {
    const { deploymentId } = await submitDeployment(deps, { tenantId, token: `tok-${tenantId}`, body: chain(5) });
    await prepare(deps, deploymentId);
    await bastionOpened(deps, deploymentId);
    for (let i = 1; i <= 5; i++) await awaitDependencies(deps, { deploymentId, stepId: `s${i}`, taskToken: `next-s${i}` });
    return deploymentId;
  }

  it('pre-starts only the next level of a chain whose steps took ten minutes last time, and the one after once it runs', async () => {
    await finishedRun(600);
    const id = await nextRun();
    expect((await deps.store.getDeployment(id))?.expectedStepSeconds).toMatchObject({ s1: 600, s5: 600 });
    expect(answer('next-s1')).toMatchObject({ ok: true, output: { run: true } });
    // s1 runs: s2 may start (s1's ten minutes hide its start); s3's release is twenty minutes away.
    expect(answer('next-s2')).toMatchObject({ ok: true, output: { prestart: true } });
    expect(answer('next-s3')).toBeUndefined();
    t += 600_000;
    await recordStepResult(deps, { deploymentId: id, stepId: 's1' });
    expect((await deps.store.getStep(id, 's2'))?.status).toBe('running');
    expect(answer('next-s3')).toMatchObject({ ok: true, output: { prestart: true } });
    expect(answer('next-s4')).toBeUndefined();
  });

  it('pre-starts the whole chain when its steps took a second each last time', async () => {
    await finishedRun(1);
    await nextRun();
    for (let i = 2; i <= 5; i++) expect(answer(`next-s${i}`)).toMatchObject({ ok: true, output: { prestart: true } });
  });

  it("never uses another tenant's run of the same name, and without a run of its own pre-starts as far as the cap", async () => {
    await finishedRun(600, 'other');
    const id = await nextRun();
    expect((await deps.store.getDeployment(id))?.expectedStepSeconds).toBeUndefined();
    for (let i = 2; i <= 5; i++) expect(answer(`next-s${i}`)).toMatchObject({ ok: true, output: { prestart: true } });
  });

  it('does not look ahead by time when the policy names no start (as before)', async () => {
    await finishedRun(600);
    deps.prestart = { maxWaiting: 10 };
    const id = await nextRun();
    expect((await deps.store.getDeployment(id))?.expectedStepSeconds).toBeUndefined();
    expect(answer('next-s5')).toMatchObject({ ok: true, output: { prestart: true } });
  });
});

describe('expectedReleaseAt', () => {
  const now = Date.parse('2026-11-30T09:00:00Z');
  const at = (ms: number) => new Date(now + ms).toISOString();
  const rec = (stepId: string, dependsOn: string[], fields: Partial<StepRecord>): StepRecord =>
    ({ deploymentId: 'd', stepId, system: false, dependsOn, attempt: 0, status: 'waiting', spec: { id: stepId, action: 'run', command: 'true', dependsOn }, ...fields }) as StepRecord;
  const deps = (s: StepRecord) => s.dependsOn;

  it('adds the expected durations along the chain, from a running step and a pre-started one still booting', () => {
    const steps = new Map([
      ['a', rec('a', [], { status: 'running', startedAt: at(-10_000) })],
      ['b', rec('b', ['a'], { prestartedAt: at(-5_000) })],
      ['c', rec('c', ['b'], {})],
    ]);
    // a ends at +20 s (30 s from its start); b is up at +55 s (a 60 s start), so it ends at +55 + 40 s.
    expect(expectedReleaseAt(steps.get('c')!, steps, deps, { a: 30, b: 40 }, 60_000, now) - now).toBe(95_000);
    // Without durations every step counts 0: only b's start remains.
    expect(expectedReleaseAt(steps.get('c')!, steps, deps, {}, 60_000, now) - now).toBe(55_000);
  });

  it('counts a dependency that ended, or whose record was not read, as done', () => {
    const steps = new Map([['a', rec('a', [], { status: 'succeeded', startedAt: at(-60_000), endedAt: at(-1_000) })], ['c', rec('c', ['a', 'x'], {})]]);
    expect(expectedReleaseAt(steps.get('c')!, steps, deps, { a: 600, x: 600 }, 60_000, now)).toBe(now);
  });

  it('counts a step from its release once its sandbox is up, not its sandbox start', () => {
    const durations = stepDurations([
      // Started at its release: up 9 s later, ran 1 s.
      rec('cold', [], { status: 'succeeded', startedAt: at(0), claimedAt: at(9_000), endedAt: at(10_000) }),
      // Pre-started and up before its release: ran 2 s from the release.
      rec('warm', [], { status: 'succeeded', prestartedAt: at(-20_000), readyAt: at(-5_000), startedAt: at(0), endedAt: at(2_000) }),
      // Released before its pre-started sandbox was up: ran 1 s from readyAt.
      rec('late', [], { status: 'succeeded', prestartedAt: at(-5_000), startedAt: at(0), readyAt: at(4_000), endedAt: at(5_000) }),
      rec('failed', [], { status: 'failed', startedAt: at(0), endedAt: at(5_000) }),
    ]);
    expect(durations).toEqual({ cold: 1, warm: 2, late: 1 });
  });

  it("takes the deployment's own start once sandboxes came up", () => {
    const steps = new Map([
      ['a', rec('a', [], { prestartedAt: at(-9_000), readyAt: at(-7_000) })],
      ['b', rec('b', [], { prestartedAt: at(-9_000), readyAt: at(-6_000) })],
      ['c', rec('c', [], { prestartedAt: at(-9_000), readyAt: at(-1_000) })],
      ['d', rec('d', [], {})],
    ]);
    expect(observedStartMs(steps)).toBe(3_000);
    expect(observedStartMs(new Map([['d', rec('d', [], {})]]))).toBeUndefined();
  });
});
