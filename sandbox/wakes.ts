/**
 * Wakes of a runner waiting for its release (local mode: a line on its stdin after the task). A wake
 * carries nothing: it only ends the current poll sleep, and the runner reads its step as always.
 */
export class Wakes {
  /** A wake came since the last read began: what it announced may postdate that read. */
  private pending = false;
  private readonly listeners = new Set<() => void>();

  wake(): void {
    this.pending = true;
    for (const listener of [...this.listeners]) listener();
  }

  /** A read of the step begins: it sees whatever the wakes so far announced. */
  clear(): void {
    this.pending = false;
  }

  /** Calls `listener` at the next wake (at once if one is pending); returns its removal. */
  onWake(listener: () => void): () => void {
    if (this.pending) {
      listener();
      return () => undefined;
    }
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
