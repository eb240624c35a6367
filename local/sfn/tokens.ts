/**
 * Task tokens for `.waitForTaskToken` tasks. The library's `$$.Task.Token` is one fixed context value,
 * so every attempt gets a fresh unguessable token here and waits for SendTask* against it.
 */
import { randomBytes } from 'node:crypto';
import { SfnError } from './errors.ts';

/** Callbacks of the task attempt waiting on a token. */
export interface TokenWaiter {
  executionArn: string;
  success(output: unknown): void;
  failure(error: string, cause: string): void;
  heartbeat(): void;
}

const TOKEN_PATTERN = /^[A-Za-z0-9_-]{16,1024}$/;

export class TaskTokens {
  private readonly live = new Map<string, TokenWaiter>();
  /** Tokens whose task ended (completed, timed out, stopped): AWS answers TaskTimedOut for them. */
  private readonly retired = new Set<string>();

  /** A new token; 48 random bytes, URL-safe so it travels in env vars and JSON unescaped. */
  static create(): string {
    return randomBytes(48).toString('base64url');
  }

  register(token: string, waiter: TokenWaiter): void {
    this.live.set(token, waiter);
  }

  retire(token: string): void {
    if (this.live.delete(token)) this.retired.add(token);
  }

  retireExecution(executionArn: string): void {
    for (const [token, waiter] of this.live) if (waiter.executionArn === executionArn) this.retire(token);
  }

  retireAll(): void {
    for (const token of [...this.live.keys()]) this.retire(token);
  }

  sendSuccess(token: string, output: string): void {
    let parsed: unknown;
    try {
      parsed = JSON.parse(output);
    } catch {
      throw new SfnError('InvalidOutput', 'Invalid output: the output must be valid JSON');
    }
    const waiter = this.take(token);
    waiter.success(parsed);
  }

  sendFailure(token: string, error: string, cause: string): void {
    this.take(token).failure(error, cause);
  }

  sendHeartbeat(token: string): void {
    this.lookup(token).heartbeat();
  }

  private take(token: string): TokenWaiter {
    const waiter = this.lookup(token);
    this.retire(token);
    return waiter;
  }

  private lookup(token: string): TokenWaiter {
    if (typeof token !== 'string' || !TOKEN_PATTERN.test(token)) {
      throw new SfnError('InvalidToken', 'Invalid Token: the provided task token is malformed');
    }
    const waiter = this.live.get(token);
    if (waiter) return waiter;
    if (this.retired.has(token)) throw new SfnError('TaskTimedOut', 'Task Timed Out: Provided task does not exist anymore');
    throw new SfnError('TaskDoesNotExist', 'Task does not exist: the provided task token is unknown');
  }
}
