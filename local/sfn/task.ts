/**
 * Runs one Task attempt with AWS semantics the library lacks: routing by Resource, Lambda's response
 * envelope and error shape, fresh task tokens, HeartbeatSeconds, our own TimeoutSeconds (time-scaled, save a Lambda's: timeoutScale),
 * and a cancel signal for the router. Records the attempt's Task* history events.
 */
import { ENVELOPE, PARAMS, type TaskStateInfo } from './definition.ts';
import { ExecutionStoppedError, TaskError } from './errors.ts';
import { toJsonText, type ExecutionHistory } from './history.ts';
import { TaskTokens } from './tokens.ts';
import { attemptKey, type AttemptEntries } from './attempts.ts';
import type { TaskRouter } from './types.ts';

export interface TaskAttemptContext {
  executionArn: string;
  region: string;
  timeScale: number;
  /** Placeholder the library resolves `$$.Task.Token` to; replaced by the attempt's token. */
  tokenPlaceholder: string;
  /** Aborted when the execution stops or the engine shuts down. */
  executionSignal: AbortSignal;
  history: ExecutionHistory;
  entries: AttemptEntries;
  tokens: TaskTokens;
  router: TaskRouter;
}

/** A Resource ARN split the way history details name it (resourceType `lambda`, resource `invoke`). */
interface ResourceParts {
  resourceType: string;
  resource: string;
  isLambdaInvoke: boolean;
  waitsForToken: boolean;
}

export function parseResource(arn: string): ResourceParts {
  const integration = /^arn:aws[a-z-]*:states:::([^:]+):(.+)$/.exec(arn);
  const resourceType = integration?.[1] ?? (arn.includes(':lambda:') ? 'lambda' : 'unknown');
  const resource = integration?.[2] ?? arn;
  return {
    resourceType,
    resource,
    isLambdaInvoke: resourceType === 'lambda' && (resource.startsWith('invoke') || !integration),
    waitsForToken: resource.endsWith('.waitForTaskToken'),
  };
}

/**
 * What a task's TimeoutSeconds is multiplied by. The time scale compresses what the state machine waits for (a
 * token's answer, a sandbox's run); a Lambda invoked request-response is computing, which no scale makes faster,
 * and in AWS each runs on its own CPU where locally all share the engine's: its limit stays as written, or 200
 * roots released at once outlast ReleaseRoots' 60 s × 0.2 on a loaded machine (docs/ARCHITECTURE.md, "Time scale").
 */
export function timeoutScale(parts: ResourceParts, timeScale: number): number {
  return parts.isLambdaInvoke && !parts.waitsForToken ? 1 : timeScale;
}

export async function runTaskAttempt(ctx: TaskAttemptContext, info: TaskStateInfo, handlerInput: unknown): Promise<unknown> {
  const wrapped = (handlerInput ?? {}) as { [ENVELOPE]?: { input?: unknown; timeout?: unknown }; [PARAMS]?: unknown };
  const envelope = wrapped[ENVELOPE] ?? {};
  const anchor = await ctx.entries.claim(info.name, attemptKey(envelope.input, info.hasInputPath));
  if (ctx.executionSignal.aborted) throw new ExecutionStoppedError();

  const parts = parseResource(info.resource);
  const token = TaskTokens.create();
  const parameters = replaceText(wrapped[PARAMS] ?? null, ctx.tokenPlaceholder, token);
  const timeoutSeconds = info.timeoutSeconds ?? positiveInteger(envelope.timeout);
  if (info.timeoutSecondsPath !== undefined && timeoutSeconds === undefined) {
    throw new TaskError('States.Runtime', `TimeoutSecondsPath '${info.timeoutSecondsPath}' did not resolve to a positive integer`);
  }
  const heartbeatSeconds = parts.waitsForToken ? info.heartbeatSeconds : undefined;
  const detail = { resourceType: parts.resourceType, resource: parts.resource };
  const lane = anchor.lane;

  ctx.history.add(
    {
      type: 'TaskScheduled',
      taskScheduledEventDetails: {
        ...detail,
        region: ctx.region,
        parameters: toJsonText(parameters),
        ...(timeoutSeconds !== undefined ? { timeoutInSeconds: timeoutSeconds } : {}),
        ...(heartbeatSeconds !== undefined ? { heartbeatInSeconds: heartbeatSeconds } : {}),
      },
    },
    lane,
    anchor.previousEventId,
  );
  ctx.history.add({ type: 'TaskStarted', taskStartedEventDetails: detail }, lane);

  const controller = new AbortController();
  return new Promise<unknown>((resolve, reject) => {
    let done = false;
    let submitted = !parts.waitsForToken;
    let deferredOutcome: (() => void) | undefined;
    let heartbeatTimer: NodeJS.Timeout | undefined;
    let timeoutTimer: NodeJS.Timeout | undefined;

    const finish = (settle: () => void): void => {
      if (done) return;
      done = true;
      clearTimeout(timeoutTimer);
      clearTimeout(heartbeatTimer);
      ctx.tokens.retire(token);
      ctx.executionSignal.removeEventListener('abort', onStopped);
      settle();
    };
    const fail = (error: string, cause: string): void =>
      finish(() => {
        ctx.history.add({ type: 'TaskFailed', taskFailedEventDetails: { ...detail, error, cause } }, lane);
        reject(new TaskError(error, cause));
      });
    const timeOut = (error: string, cause: string): void =>
      finish(() => {
        ctx.history.add({ type: 'TaskTimedOut', taskTimedOutEventDetails: { ...detail, error, cause } }, lane);
        controller.abort(new TaskError(error, cause));
        reject(new TaskError(error, cause));
      });
    const succeed = (output: unknown): void =>
      finish(() => {
        ctx.history.add({ type: 'TaskSucceeded', taskSucceededEventDetails: { ...detail, output: toJsonText(output), outputDetails: { truncated: false } } }, lane);
        resolve(output);
      });
    /** Token callbacks can arrive before the router returns; TaskSubmitted must come first. */
    const afterSubmit = (outcome: () => void): void => {
      if (submitted) outcome();
      else deferredOutcome = outcome;
    };
    function onStopped(): void {
      finish(() => {
        controller.abort(new ExecutionStoppedError());
        reject(new ExecutionStoppedError());
      });
    }
    const armHeartbeat = (): void => {
      if (heartbeatSeconds === undefined || done) return;
      clearTimeout(heartbeatTimer);
      heartbeatTimer = setTimeout(
        () => timeOut('States.HeartbeatTimeout', `No heartbeat received for ${heartbeatSeconds} seconds`),
        heartbeatSeconds * 1000 * ctx.timeScale,
      );
    };

    if (ctx.executionSignal.aborted) return onStopped();
    ctx.executionSignal.addEventListener('abort', onStopped, { once: true });
    if (timeoutSeconds !== undefined) {
      timeoutTimer = setTimeout(() => timeOut('States.Timeout', `Task did not complete within ${timeoutSeconds} seconds`), timeoutSeconds * 1000 * timeoutScale(parts, ctx.timeScale));
    }
    armHeartbeat();
    if (parts.waitsForToken) {
      ctx.tokens.register(token, {
        executionArn: ctx.executionArn,
        success: (output) => afterSubmit(() => succeed(output)),
        failure: (error, cause) => afterSubmit(() => fail(error, cause)),
        heartbeat: armHeartbeat,
      });
    }

    Promise.resolve()
      .then(() =>
        ctx.router({
          resource: info.resource,
          parameters,
          ...(parts.waitsForToken ? { taskToken: token } : {}),
          executionArn: ctx.executionArn,
          stateName: info.name,
          signal: controller.signal,
        }),
      )
      .then(
        (result) => {
          if (done) return;
          const response = parts.isLambdaInvoke ? { ExecutedVersion: '$LATEST', Payload: result ?? null, StatusCode: 200 } : result;
          const unplaced = parts.resourceType === 'ecs' && parts.resource !== 'runTask' ? runTaskFailures(response) : undefined;
          if (unplaced) return fail(ECS_RUN_TASK_FAILED, unplaced);
          if (!parts.waitsForToken) return succeed(response);
          ctx.history.add({ type: 'TaskSubmitted', taskSubmittedEventDetails: { ...detail, output: toJsonText(response), outputDetails: { truncated: false } } }, lane);
          submitted = true;
          deferredOutcome?.();
        },
        (thrown: unknown) => {
          if (done) return;
          const { error, cause } = describeRouterError(thrown, parts.isLambdaInvoke);
          fail(error, cause);
        },
      );
  });
}

/**
 * A router failure as Step Functions reports it. For Lambda, the unhandled-error shape:
 * Error = errorType, Cause = JSON `{errorMessage, errorType}`.
 */
export function describeRouterError(thrown: unknown, isLambda: boolean): { error: string; cause: string } {
  const error = thrown instanceof Error && thrown.name ? thrown.name : 'Error';
  const message = thrown instanceof Error ? thrown.message : String(thrown);
  if (!isLambda) return { error, cause: message };
  return { error, cause: JSON.stringify({ errorMessage: message, errorType: error }) };
}

/**
 * The error `.sync`/`.waitForTaskToken` ecs:runTask states fail with when RunTask answers `failures` and no
 * task (no capacity, the vCPU quota): AmazonECS.Unknown, as the project reads AWS (docs/ARCHITECTURE.md's error
 * table; AWS re:Post also names ECS.AmazonECSException for capacity, which the ASL catches alike).
 */
export const ECS_RUN_TASK_FAILED = 'AmazonECS.Unknown';

/** RunTask's response (the SDK's camelCase or Step Functions' PascalCase) with failures and no task: the cause, else undefined. */
export function runTaskFailures(response: unknown): string | undefined {
  const r = (response ?? {}) as { tasks?: unknown[]; Tasks?: unknown[]; failures?: unknown[]; Failures?: unknown[] };
  const tasks = r.tasks ?? r.Tasks ?? [];
  const failures = r.failures ?? r.Failures ?? [];
  if (tasks.length > 0 || failures.length === 0) return undefined;
  // The cause's wording is ours; it carries ECS's failures as they came.
  return `RunTask started no task: ${JSON.stringify(failures)}`;
}

function positiveInteger(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined;
}

/** Replaces `needle` inside every string of a JSON value. */
function replaceText(value: unknown, needle: string, replacement: string): unknown {
  if (typeof value === 'string') return value.split(needle).join(replacement);
  if (Array.isArray(value)) return value.map((item) => replaceText(item, needle, replacement));
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, replaceText(item, needle, replacement)]));
  }
  return value;
}
