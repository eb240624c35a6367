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

/** What the lanes are read from (the parsed definition's fields of the same names). */
export interface LaneInfo {
  branchLanes?: ReadonlyMap<string, string>;
  maps?: ReadonlyMap<string, MapStateInfo>;
  enclosingMap?: ReadonlyMap<string, string>;
}

/**
 * The lane of one iteration of Map `map`: keyed by its item value when the ItemSelector carries it,
 * else by its index. The library numbers a nested Map's state events with the *outer* index, so a
 * batch's iterations (RunWorkflow → RunBatch) are only told apart by their items (step ids).
 */
function iterationLane(map: string, info: LaneInfo, item: Json | undefined, index: number | undefined): string {
  return info.maps?.get(map)?.itemField !== undefined && item !== undefined ? `iteration:${map}:${JSON.stringify(item)}` : `iteration:${map}#${index ?? '?'}`;
}

/** The lane a state runs in, from its name and input: its Parallel branch's, its Map iteration's, or the root. */
function stateLane(name: string, input: unknown, index: number | undefined, info: LaneInfo): string {
  const map = info.enclosingMap?.get(name);
  if (map === undefined) return info.branchLanes?.get(name) ?? ROOT_LANE;
  const field = info.maps?.get(map)?.itemField;
  const item = field !== undefined && isRecord(input) ? (input[field] as Json | undefined) : undefined;
  return iterationLane(map, info, item, index);
}

/** The item of a Map iteration event, read from the Map's raw input and ItemsPath. */
function itemOf(parent: { name: string; input: unknown }, index: number, info: LaneInfo): Json | undefined {
  const items = readSimplePath(parent.input as Json, info.maps?.get(parent.name)?.itemsPath);
  return Array.isArray(items) ? items[index] : undefined;
}

/**
 * The lane a library event belongs to: every Map iteration has its own (nested ones included); a
 * state directly inside a Parallel branch has its branch's lane (OpenBastionAccess beside
 * RunWorkflow), so its task events never chain to the other branch's.
 */
export function laneOf(event: LibraryEvent, info: LaneInfo = {}): string {
  if (event.type === 'MapIterationStarted' || event.type === 'MapIterationSucceeded' || event.type === 'MapIterationFailed') {
    return iterationLane(event.parentState.name, info, itemOf(event.parentState, event.index, info), event.index);
  }
  if ('state' in event) return stateLane(event.state.name, event.state.input, event.index, info);
  return ROOT_LANE;
}

/** The lane of the Map state that runs a Map iteration event: its MapIterationStarted chains to that lane's last event. */
function mapLaneOf(parent: { name: string; input: unknown }, info: LaneInfo): string {
  return stateLane(parent.name, parent.input, undefined, info);
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
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
export function recordStateEvent(history: ExecutionHistory, event: LibraryEvent, info: LaneInfo): number | undefined {
  const lane = laneOf(event, info);
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
      const items = readSimplePath(event.state.input as Json, info.maps?.get(event.state.name)?.itemsPath);
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
        history.lastOf(mapLaneOf(event.parentState, info)),
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
