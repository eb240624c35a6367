import { openPrivateKey } from '../core/crypto/sealedKey.ts';
import { DEFAULT_STEP_TIMEOUT_SECONDS } from '../core/deployment/constants.ts';
import { ERROR_TABLE, ErrorName, HEARTBEAT_INTERVAL_SECONDS, PRESTART_LOST, StepError, TaskTokenGoneError, isStepError } from '../core/errors.ts';
import { Metric, type MetricsPort } from '../core/metrics.ts';
import { idleBeforeTakeBack } from '../core/lifecycle/step.ts';
import type { DeploymentRecord, StepRecord } from '../core/model.ts';
import type { Clock, CloudDriver, DeploymentStore, ExecutionService, SecretVault } from '../core/ports.ts';
import { ACTIONS } from './actions/index.ts';
import type { Action } from './actions/types.ts';
import { StepLog } from './stepLog.ts';
import type { StepUser } from './stepUser.ts';
import type { Wakes } from './wakes.ts';

/** What one sandbox run needs; main.ts builds it from the task's environment. */
export interface RunnerDeps {
  store: DeploymentStore;
  vault: SecretVault;
  executions: ExecutionService;
  cloud: CloudDriver;
  clock: Clock;
  workDir: string;
  /** The uid the user's code runs as, apart from the runner's credentials (see stepUser.ts). */
  stepUser?: StepUser;
  timeScale: number;
  /** Overridable for tests; production heartbeats every 20 s. */
  heartbeatMs?: number;
  /** A pre-started sandbox polls its step for the release: first delay, growing ×1.5 up to max (default RELEASE_POLL_MS). */
  releasePollMs?: { first: number; max: number };
  /** Ends a release poll's sleep at once (local mode: the launcher wakes a runner at its step's release). */
  wakes?: Wakes;
  /**
   * A pre-started sandbox waits at most this long for its release once up (seconds on the engine's clock, as
   * the policy gives it: the release's `maxIdleSeconds`): then it gives its registration back and answers
   * PRESTART_LOST, so the step starts a fresh sandbox at its release. None: it waits as long as its state allows.
   */
  maxIdleSeconds?: number;
  actions?: Partial<Record<string, Action>>;
  /** Aborted by SIGTERM (StopTask): the action stops, connections close, the runner reports and exits. */
  signal: AbortSignal;
  /** Start latency, step duration and retryable failures (core/metrics.ts); none when absent. */
  metrics?: MetricsPort;
}

export interface TaskIds {
  deploymentId: string;
  stepId: string;
  taskToken: string;
  taskArn: string;
}

export type RunOutcome = { ok: true; output: Record<string, unknown> } | { ok: false; error: string; cause: string };

/**
 * One step attempt: check the step may run, decrypt what it needs, heartbeat, run the action,
 * classify a failure by the error table and answer the task token. Never throws; the answer
 * is the outcome (also returned for tests).
 */
export async function runStep(deps: RunnerDeps, ids: TaskIds): Promise<RunOutcome> {
  const outcome = await attempt(deps, ids);
  try {
    if (outcome.ok) await deps.executions.sendTaskSuccess(ids.taskToken, outcome.output);
    else await deps.executions.sendTaskFailure(ids.taskToken, outcome.error, outcome.cause);
  } catch (e) {
    // The state machine stopped waiting (aborted, cancelled, timed out): nobody to tell.
    if (!(e instanceof TaskTokenGoneError)) throw e;
  }
  return outcome;
}

async function attempt(deps: RunnerDeps, ids: TaskIds): Promise<RunOutcome> {
  const stop = new AbortController();
  const onStop = () => stop.abort();
  deps.signal.addEventListener('abort', onStop, { once: true });
  // The heartbeat needs only the task token: sent beside the claim, it tells the state machine the
  // sandbox is up without waiting for the claim's round trips (it reads and decrypts nothing).
  const heartbeat = startHeartbeat(deps, ids.taskToken, stop);
  const endBeforeStart = () => {
    clearInterval(heartbeat);
    deps.signal.removeEventListener('abort', onStop);
  };
  const claim = await claimAttempt(deps, ids).catch((e: unknown) => {
    endBeforeStart();
    throw e;
  });
  if ('ok' in claim) {
    endBeforeStart();
    return claim;
  }
  const { deployment, step, attemptNo, prestarted } = claim;
  // The attempt's own start: step duration and start latency are measured from here (after the release when pre-started).
  let began = deps.clock.now();
  let releasedAt = step.startedAt;
  let overrun: ReturnType<typeof setTimeout> | undefined;
  let overran: string | undefined;
  // The action's own module is engine code, not the user's: loading it while the release is awaited takes it off the critical path.
  const loadingAction = loadAction(deps, step);
  if (prestarted) {
    // Up ahead of the release: no secret is read and no user code runs until the step is `running`.
    const released = await awaitRelease(deps, ids, claim, stop.signal);
    if ('ok' in released) {
      clearInterval(heartbeat);
      deps.signal.removeEventListener('abort', onStop);
      return released;
    }
    began = deps.clock.now();
    // Its start latency is how late it saw its release: the cold start itself was hidden.
    releasedAt = released.startedAt;
    // Its state's TimeoutSeconds also covered the wait, so the step's own limit is kept here, from its release.
    const limitSeconds = step.spec.timeoutSeconds ?? DEFAULT_STEP_TIMEOUT_SECONDS;
    overrun = setTimeout(() => {
      overran = `the step ran past its time limit of ${limitSeconds} s`;
      stop.abort();
    }, limitSeconds * 1000 * deps.timeScale);
  }
  const log = new StepLog(deps.store, ids.deploymentId, ids.stepId, attemptNo);

  let outcome: RunOutcome;
  try {
    // Released: the secrets, the files and the action in parallel (one round trip, not three, before the action starts).
    const [secrets, files, action] = await Promise.all([
      deps.store.getSecrets(ids.deploymentId),
      needsFiles(step) ? deps.store.getFiles(ids.deploymentId) : {},
      loadingAction,
    ]);
    if (!secrets) throw new StepError(ErrorName.StepFailed, 'the deployment has ended: its secrets are gone');
    const context = { deploymentId: deployment.deploymentId, tenantId: deployment.tenantId };
    const token = await deps.vault.decrypt(secrets.tokenCiphertext, context);
    const privateKey = openPrivateKey(secrets.sshPrivateKeySealed, token, deployment.deploymentId);
    log.redact(token, privateKey);
    log.line('engine', `${step.spec.action} ${step.stepId}: attempt ${attemptNo} started`);
    const output = await untilStopped(stop.signal, action({
      deployment,
      topology: deployment.topology,
      step: { ...step, attempt: attemptNo },
      files,
      token,
      sshKey: { privateKey, publicKey: secrets.sshPublicKey },
      cloud: deps.cloud,
      cloudCtx: {
        token,
        deploymentId: deployment.deploymentId,
        record: (ref) => deps.store.recordCloudResource(ids.deploymentId, ref),
        forget: (ref) => deps.store.forgetCloudResource(ids.deploymentId, ref.kind, ref.id),
      },
      recordedResources: () => deps.store.listCloudResources(ids.deploymentId),
      workDir: deps.workDir,
      ...(deps.stepUser ? { stepUser: deps.stepUser } : {}),
      log,
      signal: stop.signal,
      timeScale: deps.timeScale,
    }));
    if (stop.signal.aborted) throw new StepError(ErrorName.StepFailed, 'the step was stopped');
    outcome = { ok: true, output: output ?? {} };
    log.line('engine', `${step.stepId} succeeded`);
  } catch (e) {
    // The same error as a state's own timeout, so the step fails (and is retried) exactly as before.
    outcome = overran ? failure('States.Timeout', overran) : classify(e);
    log.line('engine', `${step.stepId} failed: ${outcome.error}: ${outcome.cause}`);
  } finally {
    clearTimeout(overrun);
    clearInterval(heartbeat);
    deps.signal.removeEventListener('abort', onStop);
    await log.close();
  }
  if (step.system) await recordSystemStep(deps, ids, outcome);
  measure(deps, { ...step, ...(releasedAt ? { startedAt: releasedAt } : {}) }, attemptNo, began, outcome);
  return outcome;
}

/** The attempt's metrics: how long the sandbox took to start (first attempt of a released step), ran, and a retryable failure. */
function measure(deps: RunnerDeps, step: StepRecord, attemptNo: number, began: number, outcome: RunOutcome): void {
  if (!deps.metrics) return;
  // A workflow step's startedAt is its release, just before RunTask; system steps have no such mark.
  if (!step.system && attemptNo === 1 && step.startedAt) deps.metrics.emit(Metric.SandboxStartLatency, Math.max(0, began - Date.parse(step.startedAt)));
  deps.metrics.emit(Metric.StepDuration, deps.clock.now() - began, { Action: step.spec.action });
  if (!outcome.ok && ERROR_TABLE.some((p) => p.name === outcome.error && p.retry)) deps.metrics.emit(Metric.RetryableFailures, 1, { ErrorName: outcome.error });
}

/**
 * The action's result, or a StepFailed as soon as the step is stopped: the runner answers and
 * exits promptly even if an action is slow to notice its signal (it still gets it to clean up).
 */
function untilStopped<T>(signal: AbortSignal, work: Promise<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(new StepError(ErrorName.StepFailed, 'the step was stopped'));
    if (signal.aborted) onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Reads the step and claims its next attempt with one conditional write (the start transition, on
 * the attempt read): a step that ended since the read is not started, and two sandboxes never run
 * the same attempt. A pre-started sandbox registers on its still-waiting step the same way. A claim
 * lost only to a changed attempt count or to the release is read and tried again.
 */
async function claimAttempt(
  deps: RunnerDeps,
  ids: TaskIds,
): Promise<RunOutcome | Claim> {
  for (let tries = 0; ; tries++) {
    const [deployment, step] = await Promise.all([deps.store.getDeployment(ids.deploymentId), deps.store.getStep(ids.deploymentId, ids.stepId)]);
    if (!deployment || !step) return failure(ErrorName.StepFailed, `step ${ids.stepId} of deployment ${ids.deploymentId} does not exist`);
    const refusal = refuse(deployment, step);
    if (refusal) return refusal;
    const attemptNo = step.attempt + 1;
    const now = new Date(deps.clock.now()).toISOString();
    const prestarted = !step.system && step.status === 'waiting';
    const started = await deps.store.applyStepTransition(ids.deploymentId, ids.stepId, {
      name: step.system ? 'start-system' : prestarted ? 'register-prestarted' : 'start-attempt',
      by: 'runner',
      ifAttempt: step.attempt,
      fields: {
        attempt: attemptNo,
        taskToken: ids.taskToken,
        taskArn: ids.taskArn,
        ...(step.system ? { startedAt: now } : {}),
        ...(prestarted ? { readyAt: now } : {}),
        // Where the step's own run starts (a pre-started one's: the later of readyAt and its release); pre-start's lookahead reads it.
        ...(!step.system && !prestarted ? { claimedAt: now } : {}),
      },
    });
    if (started.applied) return { deployment, step, attemptNo, prestarted, claimedAt: now };
    const stillStartable = started.current === step.status || (prestarted && started.current === 'running');
    if (!stillStartable || tries >= CLAIM_TRIES) return decidedWhileStarting(deps, ids);
  }
}

const CLAIM_TRIES = 3;

interface Claim {
  deployment: DeploymentRecord;
  step: StepRecord;
  attemptNo: number;
  prestarted: boolean;
  /** When it was claimed: a pre-started sandbox's `readyAt`. */
  claimedAt: string;
}

/**
 * How a waiting sandbox polls for its release (ms, before the time scale): a release is seen at most
 * 0.5 s late, once per level of the DAG on the critical path; a read costs far less than the Fargate
 * second it saves (docs/ARCHITECTURE.md, "Why polling").
 */
export const RELEASE_POLL_MS = { first: 100, max: 500 } as const;

/**
 * Polls the step until its release, with backoff, a wake cutting a sleep short; the answer when it was decided otherwise,
 * or when it waited `maxIdleSeconds`. A runner that is woken (local mode) reads at once and after `first`, which see a
 * release decided from a read made before it registered (no wake comes for that one), then only every `max`: each read
 * costs the runner and the engine CPU.
 */
async function awaitRelease(deps: RunnerDeps, ids: TaskIds, claim: Claim, signal: AbortSignal): Promise<StepRecord | RunOutcome> {
  const { first, max } = deps.releasePollMs ?? RELEASE_POLL_MS;
  const idleUntil = deps.maxIdleSeconds === undefined ? Infinity : Date.parse(claim.claimedAt) + deps.maxIdleSeconds * 1000;
  let delay = first;
  for (;;) {
    if (signal.aborted) return stoppedWhileWaiting(deps, ids, claim);
    // Before the read: a wake arriving while it is on its way may announce a release it missed.
    deps.wakes?.clear();
    const step = await deps.store.getStep(ids.deploymentId, ids.stepId);
    if (step?.status === 'running') return step;
    if (step?.status !== 'waiting') return notStarting(step);
    const left = idleUntil - deps.clock.now();
    const why =
      step.prestartHaltedAt !== undefined
        ? `the sandbox started ahead of the release gave its place back: ${HALTED}`
        : left <= 0
          ? `the sandbox started ahead of the release waited ${deps.maxIdleSeconds} s for it, the most a sandbox may wait`
          : undefined;
    const back = why ? await giveBack(deps, ids, claim, why) : undefined;
    if (back) return back;
    // Past the limit with the store not answering: the take-back is tried again after the next read.
    await sleep(left <= 0 ? first : Math.min(delay, left), signal, deps.wakes);
    delay = deps.wakes ? max : Math.min(max, Math.round(delay * 1.5));
  }
}

/**
 * Stopped while it waited for its release. By ECS (SIGTERM: Spot, a retirement, an operator), nothing of the
 * user's ran: it takes its registration back, so the fresh sandbox's attempt is the step's first, and reports
 * PRESTART_LOST, so the step starts one at its release (docs/ARCHITECTURE.md, "Fallback"). A stop by the engine
 * itself (a skip, a cancel) answered the token before it, which then refuses this answer.
 */
async function stoppedWhileWaiting(deps: RunnerDeps, ids: TaskIds, claim: Claim): Promise<RunOutcome> {
  // Its heartbeat found the token gone (a state timeout, an ended execution): nobody to report to, nothing to take back.
  if (!deps.signal.aborted) return failure(ErrorName.StepFailed, 'the state machine no longer waits for this sandbox');
  const lost = failure(PRESTART_LOST, 'the sandbox started ahead of the release was stopped while it waited');
  const back = await takeBack(deps, ids, claim);
  // Taken back, by itself or first by its STOPPED event, or the store did not answer (it is dying: no time to try
  // again; its STOPPED event takes it back): a loss before the release all the same.
  if (back.taken || !back.step || back.step.status === 'waiting') return lost;
  // Released just before the stop: a running step's sandbox lost before it answered, retried once (the error table).
  if (back.step.status === 'running') return failure(ErrorName.SandboxLost, 'the sandbox was stopped right after its step was released, before the step started');
  return notStarting(back.step);
}

/**
 * Waited its idle limit, or pre-start halted (`why`, the cause it answers): it gives its registration back and answers PRESTART_LOST, and
 * its task ends, so no step's sandbox idles longer, however long its dependencies run, nor holds a place a released
 * step needs; the step starts a fresh one at its release. Released meanwhile, it runs the step after all. Undefined
 * while the store does not answer: an answer without the take-back would leave the step counting this attempt and
 * this sandbox's wait.
 */
async function giveBack(deps: RunnerDeps, ids: TaskIds, claim: Claim, why: string): Promise<StepRecord | RunOutcome | undefined> {
  const back = await takeBack(deps, ids, claim);
  if (!back.taken && !back.step) return undefined;
  if (back.step?.status === 'running') return back.step;
  if (back.step && back.step.status !== 'waiting') return notStarting(back.step);
  return failure(PRESTART_LOST, why);
}

/** Why a sandbox started ahead gives its place back, or does not take it, once pre-start halted (core/usecases/prestartFallback.ts). */
const HALTED = 'ECS refused a sandbox of this deployment (no Fargate capacity, or the vCPU quota), so it starts its sandboxes at their release';

/**
 * Takes its registration back (`prestart-lost`, on the attempt it registered): the fresh sandbox's attempt is the
 * step's first, and its wait stays in the idle figure. Refused, it reads the step as it is now; no step when the
 * store failed (the write, or the read after it).
 */
async function takeBack(deps: RunnerDeps, ids: TaskIds, claim: Claim): Promise<{ taken: true; step?: undefined } | { taken: false; step: StepRecord | undefined }> {
  const taken = await deps.store
    .applyStepTransition(ids.deploymentId, ids.stepId, {
      name: 'prestart-lost',
      by: 'runner',
      ifAttempt: claim.attemptNo,
      fields: { attempt: claim.attemptNo - 1, ...idleBeforeTakeBack(claim.claimedAt, deps.clock.now()) },
    })
    .catch(() => undefined);
  if (taken?.applied) return { taken: true };
  if (!taken) return { taken: false, step: undefined };
  return { taken: false, step: await deps.store.getStep(ids.deploymentId, ids.stepId).catch(() => undefined) };
}

/** The claim lost to the engine's decision: read it and answer accordingly. */
async function decidedWhileStarting(deps: RunnerDeps, ids: TaskIds): Promise<RunOutcome> {
  return notStarting(await deps.store.getStep(ids.deploymentId, ids.stepId));
}

/**
 * A skipped step answers success with `skipped` (its iteration ends like the skip path; no grace
 * period starts); cancelled and aborted steps keep their errors.
 */
function notStarting(step: StepRecord | undefined): RunOutcome {
  if (step?.status === 'skipped') return { ok: true, output: { skipped: step.cause ?? 'skipped' } };
  return failure(step?.status === 'cancelled' ? ErrorName.Cancelled : ErrorName.StepAborted, `step ${step?.stepId ?? '?'} is ${step?.status ?? 'gone'}; not starting it`);
}

function sleep(ms: number, signal: AbortSignal, wakes?: Wakes): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    let unwake: (() => void) | undefined;
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      unwake?.();
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
    unwake = wakes?.onWake(done);
  });
}

/** A step the engine already gave up on (aborted, cancelled, skipped) must not start late. */
function refuse(deployment: DeploymentRecord, step: StepRecord): RunOutcome | undefined {
  if (!step.system && step.status === 'waiting' && step.prestartedAt !== undefined) {
    // Up after pre-start halted: it never registers, so its task ends and the place is free for a released step.
    return deployment.prestartHalted !== undefined || step.prestartHaltedAt !== undefined ? failure(PRESTART_LOST, `the sandbox started ahead of the release did not wait for it: ${HALTED}`) : undefined;
  }
  if (!step.system && step.status === 'skipped') return notStarting(step);
  if (!step.system && step.status !== 'running') {
    return failure(step.status === 'cancelled' ? ErrorName.Cancelled : ErrorName.StepAborted, `step ${step.stepId} is ${step.status}; not starting it`);
  }
  if (deployment.status === 'CANCELLING' && step.stepId !== 'bastion-close') {
    return failure(ErrorName.Cancelled, 'the deployment was cancelled');
  }
  return undefined;
}

/** Settles (never rejects unobserved): a module that fails to load fails the attempt where it is awaited. */
function loadAction(deps: RunnerDeps, step: StepRecord): Promise<Action> {
  const own = deps.actions?.[step.spec.action];
  const loading = own ? Promise.resolve(own) : ACTIONS[step.spec.action]();
  loading.catch(() => undefined);
  return loading;
}

function needsFiles(step: StepRecord): boolean {
  return ['run', 'ssh', 'ansible'].includes(step.spec.action);
}

function startHeartbeat(deps: RunnerDeps, taskToken: string, stop: AbortController): NodeJS.Timeout {
  const every = deps.heartbeatMs ?? HEARTBEAT_INTERVAL_SECONDS * 1000 * deps.timeScale;
  const beat = async () => {
    try {
      await deps.executions.sendTaskHeartbeat(taskToken);
    } catch (e) {
      // The state machine no longer waits for this attempt (timed out, aborted): stop working.
      if (e instanceof TaskTokenGoneError) stop.abort();
    }
  };
  void beat();
  return setInterval(() => void beat(), every);
}

/** Workflow steps are recorded by the state machine's lambdas; system steps record themselves. */
async function recordSystemStep(deps: RunnerDeps, ids: TaskIds, outcome: RunOutcome): Promise<void> {
  const endedAt = new Date(deps.clock.now()).toISOString();
  // Clears the task token and arn with the status; refused only if the sandbox was declared lost meanwhile.
  await deps.store.applyStepTransition(
    ids.deploymentId,
    ids.stepId,
    outcome.ok
      ? { name: 'system-succeed', by: 'runner', fields: { endedAt, output: outcome.output } }
      : { name: 'system-fail', by: 'runner', fields: { endedAt, error: outcome.error, cause: outcome.cause } },
  );
}

/** Every failure leaves with a name from the error table; anything unexpected is Ctd.StepFailed. */
export function classify(e: unknown): { ok: false; error: string; cause: string } {
  if (isStepError(e)) return failure(e.errorName, e.message);
  return failure(ErrorName.StepFailed, e instanceof Error ? e.message : String(e));
}

function failure(error: string, cause: string): { ok: false; error: string; cause: string } {
  return { ok: false, error, cause: cause.slice(0, 32_000) };
}
