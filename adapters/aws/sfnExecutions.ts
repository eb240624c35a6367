import {
  SendTaskFailureCommand,
  SendTaskHeartbeatCommand,
  SendTaskSuccessCommand,
  StartExecutionCommand,
  paginateGetExecutionHistory,
  type SFNClient,
  type HistoryEvent as SfnHistoryEvent,
} from '@aws-sdk/client-sfn';
import { TaskTokenGoneError } from '../../core/errors.ts';
import type { HistoryEvent } from '../../core/model.ts';
import type { ExecutionService } from '../../core/ports.ts';

/** Errors Step Functions answers when a task token can no longer be used. */
const SPENT_TOKEN_ERRORS = new Set(['TaskTimedOut', 'InvalidToken', 'TaskDoesNotExist']);

/**
 * A task token that can no longer be answered: the task timed out, was already answered,
 * or its execution ended. Thrown by the sendTask* methods so use-cases can ignore a spent
 * token explicitly rather than swallowing every error.
 */
export class TaskTokenGone extends TaskTokenGoneError {
  constructor(
    /** The Step Functions error name: TaskTimedOut, InvalidToken or TaskDoesNotExist. */
    readonly reason: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
  }
}

function errorName(err: unknown): string | undefined {
  const name = (err as { name?: unknown } | null)?.name;
  return typeof name === 'string' ? name : undefined;
}

export interface SfnExecutionServiceOptions {
  client: SFNClient;
  stateMachineArn: string;
  region: string;
  /** Local mode: the engine's own console, e.g. http://127.0.0.1:8080/console. */
  consoleBaseUrl?: string;
}

/** The ExecutionService on Step Functions; executions are named after their deployment. */
export class SfnExecutionService implements ExecutionService {
  constructor(private readonly opts: SfnExecutionServiceOptions) {}

  /**
   * Starting twice under one name is idempotent: Step Functions answers ExecutionAlreadyExists
   * when the input differs, and the existing execution's ARN follows from the state machine's.
   */
  async start(name: string, input: unknown): Promise<{ executionArn: string }> {
    try {
      const res = await this.opts.client.send(
        new StartExecutionCommand({ stateMachineArn: this.opts.stateMachineArn, name, input: JSON.stringify(input) }),
      );
      if (!res.executionArn) throw new Error('StartExecution answered without an executionArn');
      return { executionArn: res.executionArn };
    } catch (err) {
      if (errorName(err) !== 'ExecutionAlreadyExists') throw err;
      return { executionArn: `${this.opts.stateMachineArn.replace(':stateMachine:', ':execution:')}:${name}` };
    }
  }

  /** The whole history, oldest first; each event keeps its AWS-named `…EventDetails` object. */
  async history(executionArn: string): Promise<HistoryEvent[]> {
    const events: HistoryEvent[] = [];
    for await (const page of paginateGetExecutionHistory({ client: this.opts.client }, { executionArn, maxResults: 1000 })) {
      for (const event of page.events ?? []) events.push(toHistoryEvent(event));
    }
    return events;
  }

  consoleUrl(executionArn: string): string {
    if (this.opts.consoleBaseUrl !== undefined) {
      return `${this.opts.consoleBaseUrl.replace(/\/+$/, '')}/executions/${executionArn}`;
    }
    const region = this.opts.region;
    return `https://${region}.console.aws.amazon.com/states/home?region=${region}#/v2/executions/details/${executionArn}`;
  }

  async sendTaskSuccess(taskToken: string, output: unknown): Promise<void> {
    // JSON.stringify(undefined) is undefined, which Step Functions rejects; an empty object is the neutral output.
    const json = JSON.stringify(output === undefined ? {} : output);
    await this.answer(taskToken, () => this.opts.client.send(new SendTaskSuccessCommand({ taskToken, output: json })));
  }

  async sendTaskFailure(taskToken: string, error: string, cause: string): Promise<void> {
    await this.answer(taskToken, () => this.opts.client.send(new SendTaskFailureCommand({ taskToken, error, cause })));
  }

  async sendTaskHeartbeat(taskToken: string): Promise<void> {
    await this.answer(taskToken, () => this.opts.client.send(new SendTaskHeartbeatCommand({ taskToken })));
  }

  /** Runs one SendTask* call, turning the spent-token errors into TaskTokenGone. */
  private async answer(taskToken: string, call: () => Promise<unknown>): Promise<void> {
    try {
      await call();
    } catch (err) {
      const name = errorName(err);
      if (name !== undefined && SPENT_TOKEN_ERRORS.has(name)) {
        // The token itself is a credential for the task; only its length goes into the message.
        throw new TaskTokenGone(name, `task token (${taskToken.length} chars) is spent: ${name}`, { cause: err });
      }
      throw err;
    }
  }
}

function toHistoryEvent(event: SfnHistoryEvent): HistoryEvent {
  const { id, previousEventId, timestamp, type, ...details } = event;
  const out: HistoryEvent = {
    id: id ?? 0,
    timestamp: timestamp instanceof Date ? timestamp.toISOString() : new Date(timestamp ?? 0).toISOString(),
    type: type ?? 'Unknown',
  };
  if (previousEventId !== undefined) out.previousEventId = previousEventId;
  for (const [key, value] of Object.entries(details)) if (value !== undefined) out[key] = value;
  return out;
}
