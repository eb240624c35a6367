import type middy from '@middy/core';
import { injectLambdaContext } from '@aws-lambda-powertools/logger/middleware';
import { logMetrics } from '@aws-lambda-powertools/metrics/middleware';
import { TASK_ENV, type TelemetryService } from '../core/config/names.ts';
import { createTelemetry, type EmfSink, type Telemetry } from '../adapters/aws/telemetry.ts';

/**
 * Logs and metrics of the Lambdas: one Powertools Logger and Metrics per process (a Lambda runs
 * one handler; local mode runs them all in the engine's process and routes their EMF lines to its
 * log). `observe` is the middy stack every handler uses: Lambda context on each log line, the
 * deployment id as the correlation id, and the invocation's metrics flushed as EMF at its end.
 */

const installed = new Map<TelemetryService, Telemetry>();
let shared: Telemetry | undefined;

export function telemetryOf(service: TelemetryService): Telemetry {
  if (shared) return shared;
  let t = installed.get(service);
  if (!t) installed.set(service, (t = createTelemetry(service)));
  return t;
}

/** Local mode: every handler of this process writes its EMF lines to `emf`; returns the telemetry they share. */
export function routeTelemetry(emf: EmfSink): Telemetry {
  return (shared = createTelemetry('engine', { emf }));
}

type Middleware = middy.MiddlewareObj<unknown, unknown>;

/** The deployment an invocation is about, from whichever event shape the handler receives. */
export function deploymentIdOf(event: unknown): string | undefined {
  if (typeof event !== 'object' || event === null) return undefined;
  const e = event as {
    deploymentId?: unknown;
    pathParameters?: { id?: unknown } | null;
    detail?: { name?: unknown; overrides?: { containerOverrides?: { environment?: { name?: string; value?: unknown }[] }[] } };
  };
  const candidates = [
    e.deploymentId, // engine Lambdas: the state machine passes it
    e.pathParameters?.id, // API: /deployments/{id}
    e.detail?.overrides?.containerOverrides?.flatMap((c) => c.environment ?? []).find((v) => v.name === TASK_ENV.deploymentId)?.value, // ECS task state change
    e.detail?.name, // Step Functions status change: the execution name is the deployment id
  ];
  return candidates.find((c): c is string => typeof c === 'string' && c !== '');
}

/**
 * The middlewares of a handler. Resolved per invocation, not at import: local mode routes the
 * telemetry after the handler modules are loaded.
 */
export function observe(service: TelemetryService): Middleware {
  const stacks = new WeakMap<Telemetry, Middleware[]>();
  const stack = (): Middleware[] => {
    const t = telemetryOf(service);
    let s = stacks.get(t);
    if (!s) {
      const correlate: Middleware = {
        before: (request) => {
          const id = deploymentIdOf(request.event);
          if (id) t.logger.setCorrelationId(id);
        },
      };
      stacks.set(t, (s = [injectLambdaContext(t.logger, { resetKeys: true }) as Middleware, correlate, logMetrics(t.metrics) as Middleware]));
    }
    return s;
  };
  // middy runs `after`/`onError` in reverse order of `before`; so does this composite.
  return {
    before: async (request) => {
      for (const m of stack()) await m.before?.(request);
    },
    after: async (request) => {
      for (const m of [...stack()].reverse()) await m.after?.(request);
    },
    onError: async (request) => {
      for (const m of [...stack()].reverse()) await m.onError?.(request);
    },
  };
}
