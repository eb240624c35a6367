import { DEFAULT_STEP_TIMEOUT_SECONDS } from '../deployment/schema.ts';
import { ErrorName, TaskTokenGoneError } from '../errors.ts';
import type { DeploymentRecord, StepRecord, StepStatus } from '../model.ts';
import { DEFAULT_PRESTART_MAX_IDLE_SECONDS, iso, type EngineDeps, type PrestartPolicy } from './deps.ts';
import { expectedReleaseAt, observedStartMs } from './lookahead.ts';

/**
 * Releasing steps from AwaitDependencies. A step is released exactly once: the conditional
 * move out of `waiting` decides who releases it, whichever of "the step registered its token"
 * and "its last dependency finished" happens second. See docs/ARCHITECTURE.md ("Scheduling").
 */

/**
 * What AwaitDependencies answers: run the sandbox (with the step's time limit) or skip it. A
 * pre-started sandbox (`prestart`) boots now and waits in the step's record for its release, so
 * its time limit also covers the longest its dependencies may still take.
 */
export interface Release {
  run: boolean;
  timeoutSeconds: number;
  prestart?: boolean;
  /** With `prestart`: the longest the sandbox, once up, waits for its release (PrestartPolicy.maxIdleSeconds). */
  maxIdleSeconds?: number;
}

export type Verdict =
  | { kind: 'run' }
  | { kind: 'prestart' }
  | { kind: 'skip'; status: Extract<StepStatus, 'skipped' | 'cancelled'>; cause: string }
  | { kind: 'wait' };

/** What a waiting pre-started sandbox answers its token when its step was skipped: RecordStepResult then has nothing to record. */
export interface SkippedAnswer {
  skipped: string;
}

/** The longest a sandbox may wait: Step Functions' own 1-year cap is far; a week matches AwaitDependencies. */
const MAX_WAIT_BUDGET_SECONDS = 604_800;

/** A deployment is winding down once cancelled or once any step failed: nothing new starts. */
export function windingDown(deployment: DeploymentRecord): { status: 'skipped' | 'cancelled'; cause: string } | undefined {
  if (deployment.status === 'CANCELLING' || deployment.status === 'CANCELLED') {
    return { status: 'cancelled', cause: 'the deployment was cancelled before this step started' };
  }
  if (deployment.graceStartedAt) {
    return { status: 'skipped', cause: 'not started: another step of the deployment failed' };
  }
  return undefined;
}

/**
 * A waiting step whose sandbox was started ahead of its release and has not failed to start. One whose
 * pre-start failed (`prestartFailedAt`) has no sandbox: it waits for its release like any other step.
 */
export const hasWaitingSandbox = (s: StepRecord): boolean => s.status === 'waiting' && s.prestartedAt !== undefined && s.prestartFailedAt === undefined;

/** A dependency counts as started once its sandbox may boot: released, done, or itself pre-started. */
const started = (s: StepRecord | undefined): boolean => s?.status === 'running' || s?.status === 'succeeded' || (s !== undefined && hasWaitingSandbox(s));

/** Pre-started sandboxes of the deployment still waiting for their release. */
const waitingSandboxes = (steps: Map<string, StepRecord>): number => [...steps.values()].filter(hasWaitingSandbox).length;

/**
 * Whether `settle` answers the step's AwaitDependencies/AwaitRelease token: a pre-started step's first token
 * was answered at its pre-start, but one whose pre-start failed registered a new one (AwaitRelease).
 */
const answersToken = (s: StepRecord): boolean => s.prestartedAt === undefined || s.prestartFailedAt !== undefined;

/** The system step every root waits on: the roots' sandboxes reach the VMs only through the open bastion. */
export const BASTION_OPEN = 'bastion-open';

/**
 * bastion-open's worst case in the ASL (OpenBastionAccess): 300 s per attempt, and 1 + 5 + 1 + 1 + 1 + 6 = 15
 * attempts if every Retry entry ran out, with their waits (5×10 + 5 + 5 + 10 + 6×60 capped = 430 s).
 * test/unit/prestart-roots.test.ts recomputes it from statemachine/deployment.asl.json.
 */
export const BASTION_OPEN_WORST_CASE_SECONDS = 15 * 300 + 430;

/**
 * A step's dependencies as the engine waits on them: a root (no dependency of its own) waits on
 * bastion-open, which runs beside the workflow's Map (the Parallel `OpenAndRun`). Deployments
 * stored without a bastion-open record keep their own list.
 */
export function dependenciesOf(step: StepRecord, steps: Map<string, StepRecord>): string[] {
  if (step.system || step.dependsOn.length > 0 || !steps.has(BASTION_OPEN)) return step.dependsOn;
  return [BASTION_OPEN];
}

/**
 * bastion-open as a dependency. Its `failed` is not final (the state machine retries it): only its
 * failure handler in the ASL (RecordStepFailure, which opens the grace period) ends the roots. It
 * counts as started from the start: the Map's iterations only run while OpenBastionAccess has
 * launched its sandbox, and waiting for that sandbox to claim its step would cost the roots one start.
 */
function bastionOpenVerdict(bastion: StepRecord, deployment: DeploymentRecord): Verdict | 'started' | 'succeeded' {
  if (bastion.status === 'succeeded') return 'succeeded';
  if (deployment.graceStartedAt && bastion.status === 'failed') {
    return { kind: 'skip', status: 'skipped', cause: `not started: bastion access could not be opened (step "${BASTION_OPEN}" failed: ${bastion.cause ?? bastion.error ?? 'no cause given'})` };
  }
  if (bastion.status === 'waiting' || bastion.status === 'running' || bastion.status === 'failed') return 'started';
  return { kind: 'skip', status: 'skipped', cause: `dependency "${BASTION_OPEN}" ${bastion.status}` };
}

export function verdictFor(
  step: StepRecord,
  deployment: DeploymentRecord,
  steps: Map<string, StepRecord>,
  prestart: PrestartPolicy | undefined,
  now: number,
): Verdict {
  const dependsOn = dependenciesOf(step, steps);
  const bastion = dependsOn.includes(BASTION_OPEN) ? steps.get(BASTION_OPEN) : undefined;
  const bastionVerdict = bastion ? bastionOpenVerdict(bastion, deployment) : 'succeeded';
  const down = windingDown(deployment);
  // A cancel stays a cancel; a failing deployment names bastion-open when that is why a root never ran.
  if (down?.status === 'cancelled') return { kind: 'skip', ...down };
  if (typeof bastionVerdict === 'object') return bastionVerdict;
  if (down) return { kind: 'skip', ...down };
  for (const dep of step.dependsOn) {
    const status = steps.get(dep)?.status;
    if (status !== 'succeeded' && status !== 'waiting' && status !== 'running') {
      return { kind: 'skip', status: 'skipped', cause: `dependency "${dep}" ${status ?? 'is missing'}` };
    }
  }
  if (bastionVerdict === 'succeeded' && step.dependsOn.every((dep) => steps.get(dep)?.status === 'succeeded')) return { kind: 'run' };
  if (prestart && mayPrestart(step, deployment, steps, prestart, now)) return { kind: 'prestart' };
  return { kind: 'wait' };
}

/**
 * Only a step whose AwaitDependencies still waits can start its sandbox early, once its dependencies
 * started and its release is near (the lookahead), and only within the cap. When the cap leaves room for
 * fewer than want it, the room goes to the first in topological order (the soonest released, as a rule:
 * a place frees at its step's release). A rank by the chain after a step, or before it, measured slower
 * in the 60-step bench (docs/ARCHITECTURE.md, "When").
 */
function mayPrestart(step: StepRecord, deployment: DeploymentRecord, steps: Map<string, StepRecord>, prestart: PrestartPolicy, now: number): boolean {
  // ECS refused a pre-start for good: the account has no room for sandboxes that only wait (core/usecases/prestartFallback.ts).
  if (deployment.prestartHalted !== undefined) return false;
  const due = (s: StepRecord) => wantsPrestart(s, steps) && !behindLongRun(s, deployment, steps, prestart, now) && dueWithinLookahead(s, deployment, steps, prestart, now);
  if (!wantsPrestart(step, steps)) return false;
  const room = prestart.maxWaiting - Math.max(waitingSandboxes(steps), (deployment.prestartClaims ?? 0) - finishedPrestarts(steps));
  if (room <= 0 || !due(step)) return false;
  let ahead = 0;
  for (const id of deployment.stepIds) {
    if (id === step.stepId) return true;
    const other = steps.get(id);
    if (other && due(other) && ++ahead >= room) return false;
  }
  return true;
}

/**
 * A dependency has run as long as a sandbox may idle (the policy's `maxIdleSeconds`), and longer than the last
 * run said it would (a first run knows nothing): a sandbox started behind it now would likely idle out too.
 * Without it, each sandbox that idled out would free its place under the cap for the next step behind the same
 * long run, wave after wave of wasted starts; the step starts at its release. A long step the last run measured
 * is left to the lookahead, which starts its dependents' sandboxes just before its expected end.
 */
function behindLongRun(step: StepRecord, deployment: DeploymentRecord, steps: Map<string, StepRecord>, prestart: PrestartPolicy, now: number): boolean {
  const limitMs = (prestart.maxIdleSeconds ?? DEFAULT_PRESTART_MAX_IDLE_SECONDS) * 1000;
  return dependenciesOf(step, steps).some((d) => {
    const dep = steps.get(d);
    if (dep?.status !== 'running' || dep.startedAt === undefined) return false;
    const ranMs = now - Date.parse(dep.startedAt);
    return ranMs >= limitMs && ranMs >= (deployment.expectedStepSeconds?.[d] ?? 0) * 1000;
  });
}

/** A waiting step that registered its token and whose dependencies all started: the lookahead and the cap decide the rest. */
const wantsPrestart = (s: StepRecord, steps: Map<string, StepRecord>): boolean =>
  s.status === 'waiting' && s.awaitToken !== undefined && s.prestartedAt === undefined && s.dependsOn.every((dep) => started(steps.get(dep)));

/**
 * Pre-started steps whose sandbox no longer waits: released, decided, or its start failed. None ever waits
 * again, so a stale read counts too few, never too many: the claim limit it gives errs on the safe side.
 */
const finishedPrestarts = (steps: Map<string, StepRecord>): number =>
  [...steps.values()].filter((s) => s.prestartedAt !== undefined && !hasWaitingSandbox(s)).length;

/**
 * The lookahead by time (core/usecases/lookahead.ts): with the deployment's expected step durations, a
 * sandbox whose dependencies are only pre-started starts once its release is expected within two starts
 * (the deployment's observed start, else the policy's): one to boot in, one because the engine only looks
 * again when something in the deployment happens (no timer wakes it). The next level always may: its
 * dependencies run now, and no later look is due before they end. So may the roots (bastion-open's own start).
 */
function dueWithinLookahead(step: StepRecord, deployment: DeploymentRecord, steps: Map<string, StepRecord>, prestart: PrestartPolicy, now: number): boolean {
  const expected = deployment.expectedStepSeconds;
  if (!expected || prestart.startSeconds === undefined) return true;
  const nextLevel = dependenciesOf(step, steps).every((d) => {
    const status = steps.get(d)?.status;
    return d === BASTION_OPEN || status === 'running' || status === 'succeeded';
  });
  if (nextLevel) return true;
  const startMs = observedStartMs(steps) ?? prestart.startSeconds * 1000;
  return expectedReleaseAt(step, steps, (s) => dependenciesOf(s, steps), expected, startMs, now) - now <= LOOKAHEAD_STARTS * startMs;
}

/** How many starts ahead of its expected release a sandbox may start (see dueWithinLookahead). */
export const LOOKAHEAD_STARTS = 2;

const timeoutOf = (step: StepRecord | undefined): number => step?.spec.timeoutSeconds ?? DEFAULT_STEP_TIMEOUT_SECONDS;

export function releaseOf(step: StepRecord, run: boolean): Release {
  return { run, timeoutSeconds: timeoutOf(step) };
}

/**
 * The longest a pre-started sandbox can wait: the heaviest chain of its ancestors' time limits
 * (a dependency that overruns is timed out, failed, and this step skipped), where a root's chain
 * starts with bastion-open's worst case including its retries. Retries of workflow steps are not counted.
 */
export function waitBudgetSeconds(step: StepRecord, steps: Map<string, StepRecord>): number {
  const memo = new Map<string, number>();
  const budget = (s: StepRecord): number => {
    const known = memo.get(s.stepId);
    if (known !== undefined) return known;
    const value = Math.max(0, ...dependenciesOf(s, steps).map((d) => {
      // Its worst case while it may still run; nothing once it succeeded (the roots are released then).
      if (d === BASTION_OPEN) return steps.get(d)?.status === 'succeeded' ? 0 : BASTION_OPEN_WORST_CASE_SECONDS;
      const dep = steps.get(d);
      return dep ? budget(dep) + timeoutOf(dep) : 0;
    }));
    memo.set(s.stepId, value);
    return value;
  };
  return Math.min(MAX_WAIT_BUDGET_SECONDS, budget(step));
}

/**
 * Idle sandbox-seconds: from a pre-started sandbox being up to its release (or to the step's end
 * when it was skipped or cancelled while waiting); a sandbox still waiting counts up to `now`; one
 * given up before the release counts the wait it had (`prestartIdleSeconds`).
 */
export function idleSandboxSeconds(steps: readonly StepRecord[], now: number): number {
  let ms = 0;
  for (const s of steps) {
    ms += (s.prestartIdleSeconds ?? 0) * 1000;
    if (!s.readyAt) continue;
    const until = s.startedAt ?? s.endedAt;
    ms += Math.max(0, (until ? Date.parse(until) : now) - Date.parse(s.readyAt));
  }
  return Math.round(ms / 100) / 10;
}

/**
 * Applies a verdict to a waiting step: moves it out of `waiting` (only one caller wins) and,
 * when its AwaitDependencies token is known, answers it. Returns the release when this caller won.
 */
export async function settle(
  deps: EngineDeps,
  step: StepRecord,
  verdict: Verdict,
  by: 'lambda' | 'cancel' = 'lambda',
  steps?: Map<string, StepRecord>,
  /** When given, the answers to tokens go here instead of being awaited: the caller's next decision need not wait for them. */
  answers?: Promise<void>[],
): Promise<Release | undefined> {
  if (verdict.kind === 'wait') return undefined;
  const now = iso(deps.clock);
  if (verdict.kind === 'prestart') return prestart(deps, step, steps ?? new Map(), now, answers);
  const won =
    verdict.kind === 'run'
      ? await deps.store.applyStepTransition(step.deploymentId, step.stepId, { name: 'release', by, fields: { startedAt: now } })
      : await deps.store.applyStepTransition(step.deploymentId, step.stepId, {
          name: verdict.status === 'cancelled' ? 'cancel-waiting' : 'skip',
          by,
          fields: { cause: verdict.cause, endedAt: now },
        });
  // Another caller moved it out of `waiting` first: the release is theirs to answer.
  if (!won.applied) return undefined;
  const release = releaseOf(step, verdict.kind === 'run');
  deps.log('step released', { deploymentId: step.deploymentId, stepId: step.stepId, run: release.run });
  // Its waiting sandbox sees the release now rather than at its next poll. A record read before the sandbox
  // registered has no taskArn: that sandbox's poll sees the release (no extra read here for it).
  if (verdict.kind === 'run' && step.prestartedAt !== undefined && step.taskArn) deps.sandboxes.wake?.(step.taskArn);
  const respond = async () => {
    // A pre-started step's token was answered already (a stale read may still show it: answering it again is a no-op).
    if (step.awaitToken && answersToken(step)) {
      await answer(deps, step.awaitToken, release);
      await deps.store.clearStepFields(step.deploymentId, step.stepId, ['awaitToken']);
    }
    if (verdict.kind === 'skip' && step.prestartedAt !== undefined) await stopWaitingSandbox(deps, step, verdict);
  };
  await respondNowOrLater(respond, answers);
  return release;
}

/** The conditional write decided; what follows it (answers, stops) runs now, or alongside the caller's next decisions. */
async function respondNowOrLater(respond: () => Promise<void>, answers: Promise<void>[] | undefined): Promise<void> {
  if (answers) answers.push(respond());
  else await respond();
}

/** Waits for every deferred answer, then fails with the first failure (none is left running unobserved). */
async function allAnswered(answers: Promise<void>[]): Promise<void> {
  const failed = (await Promise.allSettled(answers)).find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** AwaitDependencies lets the sandbox start now; the step stays `waiting` until its real release. */
async function prestart(
  deps: EngineDeps,
  step: StepRecord,
  steps: Map<string, StepRecord>,
  now: string,
  answers: Promise<void>[] | undefined,
): Promise<Release | undefined> {
  // Once per step: settleWaiting passes running side by side read the same state, and each used to
  // pre-start the step again (a write, a token answer and a clear each, ~3 per step in the 60-step bench).
  // The same write drops the token it is about to answer: no pass answers a pre-started step's token again.
  // The cap as one conditional counter: claims taken ≤ the cap plus the pre-starts finished. Passes and
  // registrations side by side each count from their own read; without it, 20 went up to 33 in the bench.
  const cap = deps.prestart?.maxWaiting ?? 0;
  if (!(await deps.store.claimPrestart(step.deploymentId, cap + finishedPrestarts(steps)))) return undefined;
  const won = await deps.store.updateStep(step.deploymentId, step.stepId, { prestartedAt: now }, { ifStatus: ['waiting'], ifAbsent: 'prestartedAt', clear: ['awaitToken'] });
  if (!won) {
    await deps.store.unclaimPrestart(step.deploymentId);
    return undefined;
  }
  const release: Release = {
    run: true,
    prestart: true,
    timeoutSeconds: timeoutOf(step) + waitBudgetSeconds(step, steps),
    maxIdleSeconds: deps.prestart?.maxIdleSeconds ?? DEFAULT_PRESTART_MAX_IDLE_SECONDS,
  };
  deps.log('step sandbox pre-started', { deploymentId: step.deploymentId, stepId: step.stepId });
  const token = step.awaitToken;
  if (token) await respondNowOrLater(() => answer(deps, token, release), answers);
  return release;
}

/**
 * A step skipped or cancelled while its pre-started sandbox waits: answer the sandbox's token (so
 * the iteration ends without a failure of its own) and stop the task at once. A sandbox that has
 * not registered yet finds the step decided when it does, and exits without running anything.
 */
async function stopWaitingSandbox(deps: EngineDeps, step: StepRecord, verdict: Extract<Verdict, { kind: 'skip' }>): Promise<void> {
  const current = await deps.store.getStep(step.deploymentId, step.stepId);
  if (!current?.taskToken) return;
  if (verdict.status === 'cancelled') await fail(deps, current.taskToken, ErrorName.Cancelled, verdict.cause);
  else await answer(deps, current.taskToken, { skipped: verdict.cause } satisfies SkippedAnswer);
  if (current.taskArn) {
    // Best effort: the runner also sees the decision at its next poll of the step and exits. AwaitDependencies
    // has no StopTask grant (its pass skips a pre-started step only in a race with a failure or a cancel).
    await deps.sandboxes
      .stopTask(current.taskArn, `${verdict.status} while waiting: ${verdict.cause}`.slice(0, 255))
      .catch((error: unknown) => deps.log('could not stop a waiting sandbox; it stops at its next poll', { deploymentId: step.deploymentId, stepId: step.stepId, error }));
  }
  await deps.store.clearStepFields(step.deploymentId, step.stepId, ['taskToken', 'taskArn']);
}

/**
 * Re-evaluates the waiting steps after something changed (a step ended, a failure, a cancel).
 * Returns the deployment as it read it, so the caller need not read it again.
 */
export async function settleWaiting(
  deps: EngineDeps,
  deploymentId: string,
  by: 'lambda' | 'cancel' = 'lambda',
  /** The deployment, when the caller has just read it (after what it settles for). */
  known?: DeploymentRecord,
): Promise<DeploymentRecord | undefined> {
  const [deployment, all] = await Promise.all([known ?? deps.store.getDeployment(deploymentId), deps.store.getSteps(deploymentId)]);
  if (!deployment) return undefined;
  const byId = new Map(all.map((s) => [s.stepId, s]));
  // The decisions are conditional writes; the answers they lead to run alongside (a chain's whole
  // pre-start pass would otherwise hold up the step whose release started it).
  const answers: Promise<void>[] = [];
  // One walk in topological order per kind of decision, each seeing the ones before it. Returns how many it decided.
  const walk = async (kind: Verdict['kind'], atOnce: number): Promise<number> => {
    const deciding: Promise<void>[] = [];
    let won = 0;
    for (const stepId of deployment.stepIds) {
      const step = byId.get(stepId);
      if (!step || step.status !== 'waiting') continue;
      // Only steps that registered their token (or whose sandbox waits) can be answered now; the others settle themselves on registration.
      if (!step.awaitToken && step.prestartedAt === undefined) continue;
      const verdict = verdictFor(step, deployment, byId, deps.prestart, deps.clock.now());
      if (verdict.kind !== kind) continue;
      // A cancel decides cancellations only: a deployment it read already ended otherwise (the safety net) is not its to settle.
      if (by === 'cancel' && !(verdict.kind === 'skip' && verdict.status === 'cancelled')) continue;
      deciding.push(
        settle(deps, step, verdict, by, byId, answers).then((release) => {
          if (!release) return;
          byId.set(stepId, decided(step, verdict, iso(deps.clock)));
          won += 1;
        }),
      );
      if (deciding.length >= atOnce) await allAnswered(deciding.splice(0));
    }
    await allAnswered(deciding);
    return won;
  };
  try {
    // Skips one after another: a skip earlier in the walk skips its dependents later in it.
    await walk('skip', 1);
    // Releases side by side (each needs only its own dependencies to have succeeded, which no decision here
    // changes), before any pre-start write: 200 roots released when bastion-open succeeds take a few round trips.
    await walk('run', RELEASES_AT_ONCE);
    // Pre-starts last, side by side in rounds: the verdicts written together share one view, so the cap's room
    // goes to the first in topological order of all that want it (mayPrestart); a step pre-started in one round
    // lets its dependents pre-start in the next. Every round but the last decides something, so the rounds end.
    while ((await walk('prestart', RELEASES_AT_ONCE)) > 0);
  } finally {
    await allAnswered(answers);
  }
  return deployment;
}

/** Releases a pass writes at once: well under the SDK's 50 sockets a Lambda's client keeps. */
const RELEASES_AT_ONCE = 16;

/** The step as `settle` just wrote it, so the rest of the pass sees it. */
function decided(step: StepRecord, verdict: Verdict, now: string): StepRecord {
  if (verdict.kind === 'run') return { ...step, status: 'running', startedAt: now };
  if (verdict.kind === 'prestart') return { ...step, prestartedAt: now };
  if (verdict.kind === 'skip') return { ...step, status: verdict.status, endedAt: now };
  return step;
}

/** Sends a task token its answer; a token the state machine no longer waits on is not an error here. */
export async function answer(deps: EngineDeps, taskToken: string, output: unknown): Promise<void> {
  try {
    await deps.executions.sendTaskSuccess(taskToken, output);
  } catch (e) {
    if (!(e instanceof TaskTokenGoneError)) throw e;
  }
}

export async function fail(deps: EngineDeps, taskToken: string, error: string, cause: string): Promise<void> {
  try {
    await deps.executions.sendTaskFailure(taskToken, error, cause);
  } catch (e) {
    if (!(e instanceof TaskTokenGoneError)) throw e;
  }
}
