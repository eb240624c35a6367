import { StopTaskCommand, type ECSClient } from '@aws-sdk/client-ecs';
import type { SandboxLauncher } from '../../core/ports.ts';

/** ECS caps StopTask's reason at 255 characters. */
const MAX_REASON_LENGTH = 255;

export interface EcsSandboxLauncherOptions {
  client: ECSClient;
  /** Cluster name or ARN the state machine runs sandbox tasks in. */
  cluster: string;
}

/** The engine's side of the ECS sandboxes: it only ever stops them (the state machine starts them). */
export class EcsSandboxLauncher implements SandboxLauncher {
  constructor(private readonly opts: EcsSandboxLauncherOptions) {}

  /**
   * Stopping is idempotent: StopTask on a stopped task succeeds, and a task stopped long
   * enough ago that ECS forgot it ("task was not found") is just as stopped.
   */
  async stopTask(taskArn: string, reason: string): Promise<void> {
    try {
      await this.opts.client.send(
        new StopTaskCommand({ cluster: this.opts.cluster, task: taskArn, reason: reason.slice(0, MAX_REASON_LENGTH) }),
      );
    } catch (err) {
      if (isTaskGone(err)) return;
      throw err;
    }
  }
}

function isTaskGone(err: unknown): boolean {
  const { name, message } = (err ?? {}) as { name?: unknown; message?: unknown };
  return name === 'InvalidParameterException' && typeof message === 'string' && /task .*not found/i.test(message);
}
