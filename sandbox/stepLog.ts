import type { StepLogLine } from '../core/model.ts';
import type { DeploymentStore } from '../core/ports.ts';
import type { StepLogger } from './actions/types.ts';

/** Lines kept while the store refuses writes; beyond this the oldest go (and a line says so). */
export const MAX_PENDING_LINES = 10_000;

/**
 * Collects a step's output lines and writes them to the store in batches. Every line is
 * scrubbed of the secrets this sandbox holds first: a command that echoes $CTD_TOKEN must not
 * put the token into the deployment's logs. A failed write never ends the step: its lines wait
 * for the next flush, and the runner still answers its task token.
 */
export class StepLog implements StepLogger {
  private pending: StepLogLine[] = [];
  private seq = 0;
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private secrets: string[] = [];
  private dropped = 0;
  private failedWrites = 0;

  constructor(
    private readonly store: DeploymentStore,
    private readonly deploymentId: string,
    private readonly stepId: string,
    private readonly attempt: number,
    flushEveryMs = 500,
    /** Told once per run of failures, with no line content (lines may hold user data). */
    private readonly warn: (message: string) => void = (m) => console.error(m),
  ) {
    this.timer = setInterval(() => void this.flush(), flushEveryMs);
    this.timer.unref();
  }

  /** Values never to write: the token, the private key (each of its lines). */
  redact(...values: string[]): void {
    for (const v of values) {
      for (const part of v.split('\n').map((p) => p.trim())) if (part.length >= 8) this.secrets.push(part);
    }
  }

  line(stream: StepLogLine['stream'], text: string, host?: string): void {
    let clean = text;
    for (const secret of this.secrets) clean = clean.split(secret).join('***');
    this.pending.push({
      stepId: this.stepId,
      attempt: this.attempt,
      seq: this.seq++,
      at: new Date().toISOString(),
      stream,
      ...(host ? { host } : {}),
      text: clean.slice(0, 8192),
    });
  }

  /** Writes what is pending; never rejects. Lines a failed write held are retried first, in order. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      const batch = this.pending;
      this.pending = [];
      if (batch.length === 0) return;
      try {
        await this.store.appendLogs(this.deploymentId, batch);
        if (this.failedWrites > 0) this.warn(`step log of ${this.stepId}: writes work again after ${this.failedWrites} failed`);
        this.failedWrites = 0;
      } catch (e) {
        if (this.failedWrites++ === 0) this.warn(`step log of ${this.stepId}: a write failed (${errorName(e)}); keeping the lines for the next try`);
        this.requeue(batch);
      }
    });
    return this.flushing;
  }

  /** Flushes what is left; lines the store still refuses are reported as lost, not thrown. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    if (this.pending.length > 0) await this.flush();
    if (this.pending.length > 0 || this.dropped > 0) {
      this.warn(`step log of ${this.stepId}: ${this.pending.length + this.dropped} lines could not be stored`);
    }
  }

  private requeue(batch: StepLogLine[]): void {
    const all = [...batch, ...this.pending];
    const overflow = all.length - MAX_PENDING_LINES;
    if (overflow > 0) this.dropped += overflow;
    this.pending = overflow > 0 ? all.slice(overflow) : all;
  }
}

function errorName(e: unknown): string {
  return e instanceof Error ? e.name : 'unknown error';
}
