import type { StepRecord, StepStatus } from '../model.ts';
import type { Transition } from './types.ts';

type StepTransition = Transition<StepStatus, keyof StepRecord>;

const SANDBOX_FIELDS = ['taskToken', 'taskArn'] as const;

/**
 * The step lifecycle. A workflow step is released once (`release`, `skip` or `cancel-waiting`
 * decide who moves it out of `waiting`); its runner may start only while it is `running`, once per
 * attempt; RecordStepResult/RecordStepFailure, AbortStragglers, cancel and the safety net end it.
 * System steps (bastion-open, bastion-close) are started and ended by their runner, and retried by
 * the state machine, hence `start-system` from `failed`.
 */
export const STEP_LIFECYCLE = {
  release: { from: ['waiting'], to: 'running', by: ['lambda'], when: 'its dependencies succeeded: AwaitDependencies lets it run' },
  skip: { from: ['waiting'], to: 'skipped', by: ['lambda', 'safety-net'], when: 'a dependency or another step failed, or the execution ended, before it started' },
  'cancel-waiting': { from: ['waiting'], to: 'cancelled', by: ['cancel', 'lambda'], when: 'the deployment was cancelled before it started' },
  'start-attempt': { from: ['running'], to: 'running', by: ['runner'], when: 'its sandbox starts an attempt (at most one runner per attempt)' },
  'register-prestarted': {
    from: ['waiting'],
    to: 'waiting',
    by: ['runner'],
    when: 'a sandbox started ahead of its release registers on the waiting step; it reads no secret and runs nothing until `release`',
  },
  'prestart-lost': {
    from: ['waiting'],
    to: 'waiting',
    by: ['runner', 'sandbox-events'],
    clears: [...SANDBOX_FIELDS, 'readyAt'],
    when: 'its pre-started sandbox was lost, or waited past its idle limit, before the release (on the attempt it registered): not an attempt; the step starts a fresh sandbox at its release',
  },
  'start-system': { from: ['waiting', 'running', 'failed'], to: 'running', by: ['runner'], when: 'a system step\'s sandbox starts an attempt (the state machine retries it)' },
  succeed: { from: ['running'], to: 'succeeded', by: ['lambda'], clears: SANDBOX_FIELDS, when: 'RecordStepResult: its sandbox reported success' },
  'system-succeed': { from: ['running'], to: 'succeeded', by: ['runner'], clears: SANDBOX_FIELDS, when: 'a system step\'s runner records its success' },
  'system-fail': { from: ['running'], to: 'failed', by: ['runner'], clears: SANDBOX_FIELDS, when: 'a system step\'s runner records its failure' },
  fail: {
    from: ['running', 'waiting'],
    to: 'failed',
    by: ['lambda'],
    clears: [...SANDBOX_FIELDS, 'awaitToken'],
    when: 'RecordStepFailure: its sandbox failed for good',
  },
  'fail-aborted': {
    from: ['running', 'waiting'],
    to: 'aborted',
    by: ['lambda'],
    clears: [...SANDBOX_FIELDS, 'awaitToken'],
    when: 'RecordStepFailure with Ctd.StepAborted, when the engine had not marked it yet',
  },
  'fail-cancelled': {
    from: ['running', 'waiting'],
    to: 'cancelled',
    by: ['lambda'],
    clears: [...SANDBOX_FIELDS, 'awaitToken'],
    when: 'RecordStepFailure with Ctd.Cancelled, when cancel had not marked it yet',
  },
  abort: { from: ['running'], to: 'aborted', by: ['lambda', 'safety-net'], when: 'still running when the grace period ended, or when the execution ended' },
  'cancel-running': { from: ['running'], to: 'cancelled', by: ['cancel'], when: 'the user cancelled while it ran; its sandbox is stopped' },
  'sandbox-lost': {
    from: ['waiting', 'running', 'succeeded', 'failed'],
    to: 'failed',
    by: ['sandbox-events'],
    when: 'a system step\'s sandbox stopped before answering (it may have recorded success and died)',
  },
} as const satisfies Record<string, StepTransition>;

export type StepTransitionName = keyof typeof STEP_LIFECYCLE;

export const FINAL_STEP_STATUSES: readonly StepStatus[] = ['succeeded', 'failed', 'skipped', 'aborted', 'cancelled'];

/** `prestart-lost` clears `readyAt`: the wait the sandbox had goes with it, for the deployment's idle figure. */
export function idleBeforeTakeBack(readyAt: string | undefined, now: number): Pick<StepRecord, 'prestartIdleSeconds'> {
  return readyAt ? { prestartIdleSeconds: Math.max(0, Math.round((now - Date.parse(readyAt)) / 100) / 10) } : {};
}
