import type { HistoryEvent } from './model.ts';

/**
 * Reads a deployment's Step Functions history as the user thinks of it: in steps of their
 * workflow, not in Map iterations. Works on AWS-shaped events only (the local runtime writes
 * the same shape), so it gives the same answer in both modes.
 */

/** A history event with the workflow step it belongs to; engine-level events have none. */
export type AttributedEvent = HistoryEvent & { stepId?: string };

/** One sandbox run of a step. Retries of the state machine are separate attempts. */
export interface AttemptTimeline {
  attempt: number;
  startedAt: string;
  endedAt?: string;
  outcome: 'running' | 'succeeded' | 'failed' | 'timed-out' | 'aborted';
  /** The error-table name (Ctd.StepFailed …) or the States.* error. */
  error?: string;
  cause?: string;
  /** How long the state machine waited before the next attempt (the Retry interval). */
  retryWaitSeconds?: number;
}

export interface StepTimeline {
  stepId: string;
  /** AwaitDependencies: from the iteration's start until its dependencies were settled. */
  waiting?: { from: string; until?: string };
  attempts: AttemptTimeline[];
  /** The grace period this step's failure started (only the first failing step has one). */
  grace?: { from: string; until?: string };
}

/** Top-level states run as a system step's sandbox. */
const SYSTEM_STATES: Record<string, string> = { OpenBastionAccess: 'bastion-open', CloseBastionAccess: 'bastion-close' };
/** States whose Task is one sandbox attempt of the step. */
const SANDBOX_STATES = new Set(['RunStepInSandbox', 'OpenBastionAccess', 'CloseBastionAccess']);
/** Events that belong to the execution, to the Map or to the Parallel (OpenAndRun) as a whole, whatever they chain to. */
const ENGINE_EVENT = /^(Execution|MapState|MapRun|ParallelState)/;

function details(event: HistoryEvent): Record<string, unknown> | undefined {
  for (const [key, value] of Object.entries(event)) {
    if (key.endsWith('EventDetails') && typeof value === 'object' && value !== null) return value as Record<string, unknown>;
  }
  return undefined;
}

function stepIdOfJson(text: unknown): string | undefined {
  if (typeof text !== 'string' || !text.includes('"stepId"')) return undefined;
  try {
    const value: unknown = JSON.parse(text);
    const stepId = typeof value === 'object' && value !== null ? (value as { stepId?: unknown }).stepId : undefined;
    return typeof stepId === 'string' ? stepId : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Names the step of every event. A state's events name it through their input (the Map item
 * carries `stepId`) or their state name (the bastion states); every other event (TaskScheduled,
 * TaskFailed, MapIterationSucceeded …) inherits from the event it chains to with `previousEventId`.
 * A MapIterationStarted takes the step of the first state its iteration entered (which chains to
 * it): RunWorkflow nests a Map per batch, so an iteration's index is only its place in its batch.
 * The batches' own iterations carry no step. A history of the flat Map (before batches) has one Map
 * name; its iterations with no chained state fall back to their index into `stepIds`.
 */
export function attributeEvents(events: readonly HistoryEvent[], stepIds: readonly string[]): AttributedEvent[] {
  const stepOf = new Map<number, string | undefined>();
  const iterationStarts = new Map<number, AttributedEvent>();
  const mapNames = new Set<string>();
  const attributed = events.map((event): AttributedEvent => {
    const d = details(event);
    let stepId: string | undefined;
    if (ENGINE_EVENT.test(event.type) || event.type === 'MapIterationStarted') {
      stepId = undefined;
    } else if (event.type.endsWith('StateEntered') || event.type.endsWith('StateExited')) {
      const name = typeof d?.name === 'string' ? d.name : '';
      stepId = SYSTEM_STATES[name] ?? stepIdOfJson(d?.input ?? d?.output);
    } else if (event.previousEventId !== undefined) {
      stepId = stepOf.get(event.previousEventId);
    }
    stepOf.set(event.id, stepId);
    const copy: AttributedEvent = stepId === undefined ? { ...event } : { ...event, stepId };
    if (event.type === 'MapIterationStarted') {
      iterationStarts.set(event.id, copy);
      if (typeof d?.name === 'string') mapNames.add(d.name);
    }
    return copy;
  });
  for (const event of attributed) {
    const start = event.previousEventId !== undefined ? iterationStarts.get(event.previousEventId) : undefined;
    if (start && start.stepId === undefined && event.stepId !== undefined && event.type.endsWith('StateEntered')) start.stepId = event.stepId;
  }
  if (mapNames.size === 1) {
    for (const start of iterationStarts.values()) {
      const index = details(start)?.index;
      if (start.stepId === undefined && typeof index === 'number' && stepIds[index] !== undefined) start.stepId = stepIds[index];
    }
  }
  return attributed;
}

const ATTEMPT_END: Record<string, AttemptTimeline['outcome']> = {
  TaskSucceeded: 'succeeded',
  TaskFailed: 'failed',
  TaskTimedOut: 'timed-out',
  TaskAborted: 'aborted',
};

/**
 * Per step: when it waited for its dependencies, each sandbox attempt with its error and the
 * retry wait after it, and the grace period its failure started. Steps in first-event order.
 */
export function stepTimelines(events: readonly AttributedEvent[]): StepTimeline[] {
  const timelines = new Map<string, StepTimeline>();
  const state = new Map<string, string>();
  for (const event of events) {
    if (!event.stepId) continue;
    const t = timelines.get(event.stepId) ?? { stepId: event.stepId, attempts: [] };
    timelines.set(event.stepId, t);
    const d = details(event) ?? {};
    const name = typeof d.name === 'string' ? d.name : undefined;
    const at = event.timestamp;
    if (event.type.endsWith('StateEntered') && name) {
      state.set(event.stepId, name);
      if (name === 'AwaitDependencies') t.waiting ??= { from: at };
      if (name === 'GracePeriod') t.grace = { from: at };
    } else if (event.type.endsWith('StateExited') && name) {
      if (name === 'AwaitDependencies' && t.waiting && !t.waiting.until) t.waiting.until = at;
      if (name === 'GracePeriod' && t.grace) t.grace.until = at;
    } else if (event.type === 'TaskScheduled' && SANDBOX_STATES.has(state.get(event.stepId) ?? '')) {
      const previous = t.attempts[t.attempts.length - 1];
      if (previous?.endedAt) previous.retryWaitSeconds = Math.max(0, (Date.parse(at) - Date.parse(previous.endedAt)) / 1000);
      t.attempts.push({ attempt: t.attempts.length + 1, startedAt: at, outcome: 'running' });
    } else if (event.type in ATTEMPT_END && SANDBOX_STATES.has(state.get(event.stepId) ?? '')) {
      const current = t.attempts[t.attempts.length - 1];
      if (current && current.outcome === 'running') {
        current.outcome = ATTEMPT_END[event.type] ?? 'failed';
        current.endedAt = at;
        if (typeof d.error === 'string') current.error = d.error;
        if (typeof d.cause === 'string') current.cause = d.cause;
      }
    }
  }
  return [...timelines.values()];
}
