/**
 * One execution's AWS-shaped history. Events are appended in the order they happen and chained with
 * `previousEventId` per *lane*: the execution's top level is one lane and every Map iteration is its
 * own lane, so an iteration's events point at that iteration's previous event as on AWS.
 */
import type { HistoryEvent, HistoryEventType } from '@aws-sdk/client-sfn';
import { readSimplePath, type Json, type MapStateInfo } from './definition.ts';
import type { LibraryEvent } from './library.ts';

export const ROOT_LANE = 'root';

/** A history event without the fields the history assigns itself. */
export type NewEvent = Omit<HistoryEvent, 'id' | 'previousEventId' | 'timestamp' | 'type'> & { type: HistoryEventType };

export class ExecutionHistory {
  readonly events: HistoryEvent[];
  private readonly lastInLane = new Map<string, number>();

  constructor(
    private readonly persist: (event: HistoryEvent) => void,
    events: HistoryEvent[] = [],
  ) {
    this.events = events;
  }

  /** Appends an event; `previous` overrides the lane's last event (used where a lane starts). */
  add(event: NewEvent, lane: string = ROOT_LANE, previous?: number): number {
    const id = this.events.length + 1;
    const full: HistoryEvent = {
      timestamp: new Date(),
      id,
      previousEventId: previous ?? this.lastInLane.get(lane) ?? id - 1,
      ...event,
    };
    this.events.push(full);
    this.lastInLane.set(lane, id);
    this.persist(full);
    return id;
  }

  /** A copy of the events, safe to hand out. */
  snapshot(): HistoryEvent[] {
    return this.events.map((event) => ({ ...event }));
  }

  lastOf(lane: string): number {
    return this.lastInLane.get(lane) ?? this.events.length;
  }
}

const STATE_PREFIX: Record<string, string> = {
  Task: 'Task',
  Choice: 'Choice',
  Map: 'Map',
  Pass: 'Pass',
  Wait: 'Wait',
  Succeed: 'Succeed',
  Fail: 'Fail',
  Parallel: 'Parallel',
};

/**
 * The lane a library event belongs to: Map iterations are numbered by the library; a state directly
 * inside a Parallel branch has its branch's lane (OpenBastionAccess beside RunWorkflow), so its task
 * events never chain to the other branch's.
 */
export function laneOf(event: LibraryEvent, branchLanes?: ReadonlyMap<string, string>): string {
  if ('index' in event && typeof event.index === 'number') return `iteration:${event.index}`;
  const name = 'state' in event ? event.state.name : undefined;
  return (name !== undefined ? branchLanes?.get(name) : undefined) ?? ROOT_LANE;
}

export function toJsonText(value: unknown): string {
  return JSON.stringify(value ?? null);
}

export function causeText(cause: unknown): string {
  return typeof cause === 'string' ? cause : toJsonText(cause);
}

/**
 * Records the AWS events for one state-level library event. Task attempt events (TaskScheduled …
 * TaskSucceeded) come from the task runner, and execution-level events from the runtime, so those
 * library events are ignored here. Returns the id of the last event written, if any.
 */
export function recordStateEvent(
  history: ExecutionHistory,
  event: LibraryEvent,
  maps: Map<string, MapStateInfo>,
  branchLanes?: ReadonlyMap<string, string>,
): number | undefined {
  const lane = laneOf(event, branchLanes);
  switch (event.type) {
    case 'StateEntered': {
      const prefix = STATE_PREFIX[event.state.type] ?? 'Pass';
      const id = history.add(
        {
          type: `${prefix}StateEntered` as HistoryEventType,
          stateEnteredEventDetails: { name: event.state.name, input: toJsonText(event.state.input), inputDetails: { truncated: false } },
        },
        lane,
      );
      if (event.state.type !== 'Map') return id;
      const items = readSimplePath(event.state.input as Json, maps.get(event.state.name)?.itemsPath);
      return history.add(
        { type: 'MapStateStarted', mapStateStartedEventDetails: Array.isArray(items) ? { length: items.length } : {} },
        lane,
      );
    }
    case 'StateExited': {
      if (event.state.type === 'Fail') return undefined;
      if (event.state.type === 'Map') history.add({ type: 'MapStateSucceeded' }, lane, history.events.length);
      const prefix = STATE_PREFIX[event.state.type] ?? 'Pass';
      return history.add(
        {
          type: `${prefix}StateExited` as HistoryEventType,
          stateExitedEventDetails: { name: event.state.name, output: toJsonText(event.state.output), outputDetails: { truncated: false } },
        },
        lane,
      );
    }
    case 'StateFailed':
      if (event.state.type === 'Map') return history.add({ type: 'MapStateFailed' }, lane, history.events.length);
      return undefined;
    case 'MapIterationStarted':
      return history.add(
        { type: 'MapIterationStarted', mapIterationStartedEventDetails: { name: event.parentState.name, index: event.index } },
        lane,
        history.lastOf(branchLanes?.get(event.parentState.name) ?? ROOT_LANE),
      );
    case 'MapIterationSucceeded':
      return history.add(
        { type: 'MapIterationSucceeded', mapIterationSucceededEventDetails: { name: event.parentState.name, index: event.index } },
        lane,
      );
    case 'MapIterationFailed':
      return history.add(
        { type: 'MapIterationFailed', mapIterationFailedEventDetails: { name: event.parentState.name, index: event.index } },
        lane,
      );
    default:
      return undefined;
  }
}
