/**
 * A lifecycle as data: each named transition says which statuses it may start from, the status it
 * leads to, and who may fire it. Stores apply a transition as one conditional write (see baseStore.ts),
 * so two parties racing for the same record can never both win.
 */

/** Who fires a transition: the API's submit or cancel, a state machine Lambda, the sandbox runner, the ECS stop watcher, the safety net. */
export type Actor = 'submit' | 'cancel' | 'lambda' | 'runner' | 'sandbox-events' | 'safety-net';

export interface Transition<S extends string, F extends string = string> {
  from: readonly S[];
  to: S;
  by: readonly Actor[];
  /** Optional fields removed by the same write (spent task tokens, for example). */
  clears?: readonly F[];
  /** One line for the diagram's reader: when this happens. */
  when: string;
}

export type Lifecycle<S extends string, F extends string = string> = Readonly<Record<string, Transition<S, F>>>;

/**
 * What a refused transition returns: not an exception, because losing a race is an expected
 * outcome callers decide about. `current` is the status found (undefined: no such record).
 */
export type TransitionResult<S extends string> =
  | { applied: true }
  | { applied: false; transition: string; current: S | undefined };

/** The condition of one store write; every part given must hold. */
export interface WriteCondition {
  /** The record's status is one of these. */
  statusIn?: readonly string[];
  /** The record has no such attribute. */
  absent?: string;
  /** The record's `attempt` equals this (steps only): one runner per attempt. */
  attemptIs?: number;
  /** The record's numeric field is absent or below the limit (a counter that must not pass a cap). */
  below?: { field: string; limit: number };
}

/** One conditional write as a store performs it: set these fields, remove those, only if the condition holds. */
export interface ConditionalWrite {
  set: Record<string, unknown>;
  remove: readonly string[];
  /** Numeric fields to add to (an absent field counts 0), in the same write: a counter no reader can race. */
  add?: Readonly<Record<string, number>>;
  condition: WriteCondition;
}
