import type { Socket } from 'node:net';

/**
 * Keeps one SSH connection's faults inside that connection. ssh2 throws synchronously when we
 * write to a connection whose transport is gone (with compression: "Invalid Zlib instance"), and
 * such a throw inside a child-process or fs callback would reach uncaughtException and take the
 * whole engine down. Every callback of ours that touches the connection runs through `run`:
 * after the connection closed it is skipped, and a throw is logged and closes that connection only.
 */
export class ConnectionGuard {
  private closedFlag = false;
  private readonly onClose: (() => void)[] = [];

  constructor(
    private readonly socket: Socket,
    private readonly label: string,
  ) {
    socket.once('close', () => this.markClosed());
  }

  get closed(): boolean {
    return this.closedFlag || this.socket.destroyed;
  }

  /** Called once when the connection is gone (at once when it already is). */
  whenClosed(fn: () => void): void {
    if (this.closed) fn();
    else this.onClose.push(fn);
  }

  markClosed(): void {
    if (this.closedFlag) return;
    this.closedFlag = true;
    for (const fn of this.onClose.splice(0)) {
      try {
        fn();
      } catch (e) {
        this.log('close handler', e);
      }
    }
  }

  /** Runs `fn` unless the connection is gone; a throw is logged and ends this connection only. */
  run(what: string, fn: () => void): void {
    if (this.closed) return;
    try {
      fn();
    } catch (e) {
      this.fail(what, e);
    }
  }

  /** Wraps a callback with {@link run}. */
  wrap<A extends unknown[]>(what: string, fn: (...args: A) => void): (...args: A) => void {
    return (...args: A) => this.run(what, () => fn(...args));
  }

  /** Logs a fault of this connection and closes it. */
  fail(what: string, e: unknown): void {
    if (!this.closed) this.log(what, e);
    this.markClosed();
    this.socket.destroy();
  }

  private log(what: string, e: unknown): void {
    console.error(`[local cloud] ssh connection ${this.label}: ${what} failed, closing it: ${e instanceof Error ? e.message : String(e)}`);
  }
}
