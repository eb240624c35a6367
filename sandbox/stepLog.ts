import type { StepLogLine } from '../core/model.ts';
import type { DeploymentStore } from '../core/ports.ts';
import type { StepLogger } from './actions/types.ts';

/**
 * Collects a step's output lines and writes them to the store in batches. Every line is
 * scrubbed of the secrets this sandbox holds first: a command that echoes $CTD_TOKEN must not
 * put the token into the deployment's logs.
 */
export class StepLog implements StepLogger {
  private pending: StepLogLine[] = [];
  private seq = 0;
  private readonly timer: NodeJS.Timeout;
  private flushing: Promise<void> = Promise.resolve();
  private secrets: string[] = [];

  constructor(
    private readonly store: DeploymentStore,
    private readonly deploymentId: string,
    private readonly stepId: string,
    private readonly attempt: number,
    flushEveryMs = 500,
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

  flush(): Promise<void> {
    this.flushing = this.flushing.then(async () => {
      const batch = this.pending;
      this.pending = [];
      if (batch.length > 0) await this.store.appendLogs(this.deploymentId, batch);
    });
    return this.flushing;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
  }
}
