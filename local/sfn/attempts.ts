/**
 * Pairs each Task handler call with the library event that started that attempt.
 *
 * The library calls a Task handler synchronously right after dispatching StateEntered (or
 * StateRetried), but its event stream reaches us asynchronously, and events of Map iterations take
 * an extra hop. A handler therefore waits here until its own entry event has been recorded, so
 * TaskScheduled always follows TaskStateEntered and chains to it (and to the right Map iteration).
 * Attempts are matched by state name and state input; the handler sees the input through the
 * `$` the definition rewrite adds to Parameters.
 */
export interface AttemptAnchor {
  lane: string;
  /** Id of the history event the attempt's first event chains to. */
  previousEventId: number;
}

interface Waiter {
  key: string;
  resolve: (anchor: AttemptAnchor) => void;
  reject: (error: Error) => void;
}

export class AttemptEntries {
  private readonly arrived = new Map<string, Array<{ key: string; anchor: AttemptAnchor }>>();
  private readonly waiting = new Map<string, Waiter[]>();

  /** The library announced an attempt of `stateName` (StateEntered or StateRetried). */
  arrive(stateName: string, key: string, anchor: AttemptAnchor): void {
    const waiters = this.waiting.get(stateName) ?? [];
    const index = waiters.findIndex((waiter) => waiter.key === key);
    if (index >= 0) {
      const [waiter] = waiters.splice(index, 1);
      waiter?.resolve(anchor);
      return;
    }
    const list = this.arrived.get(stateName) ?? [];
    list.push({ key, anchor });
    this.arrived.set(stateName, list);
  }

  /** Resolves with the anchor of the handler's attempt once the library event has been recorded. */
  claim(stateName: string, key: string): Promise<AttemptAnchor> {
    const list = this.arrived.get(stateName) ?? [];
    const index = list.findIndex((entry) => entry.key === key);
    if (index >= 0) {
      const [entry] = list.splice(index, 1);
      if (entry) return Promise.resolve(entry.anchor);
    }
    return new Promise((resolve, reject) => {
      const waiters = this.waiting.get(stateName) ?? [];
      waiters.push({ key, resolve, reject });
      this.waiting.set(stateName, waiters);
    });
  }

  /** Releases every waiting handler (execution stopped or engine shutting down). */
  rejectAll(error: Error): void {
    for (const waiters of this.waiting.values()) for (const waiter of waiters) waiter.reject(error);
    this.waiting.clear();
    this.arrived.clear();
  }
}

/** Attempt key: the state input as JSON, or '' when InputPath hides the raw input (FIFO pairing). */
export function attemptKey(input: unknown, hasInputPath: boolean): string {
  return hasInputPath ? '' : JSON.stringify(input ?? null);
}
