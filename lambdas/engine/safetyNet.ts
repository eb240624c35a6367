import middy from '@middy/core';
import type { EventBridgeEvent } from 'aws-lambda';
import { onExecutionEnded } from '../../core/usecases/safetyNet.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/** The event's detail as Step Functions sends it (epoch-ms dates; input, error and cause may be null). */
export interface ExecutionStatusChange {
  executionArn: string;
  name: string;
  status: string;
  input?: string | null;
  error?: string | null;
  cause?: string | null;
  startDate?: number | null;
  stopDate?: number | null;
}

/**
 * EventBridge "Step Functions Execution Status Change" (FAILED, TIMED_OUT, ABORTED): an execution
 * that ended without running Cleanup gets a cleanup-only execution (core/usecases/safetyNet.ts).
 */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: EventBridgeEvent<'Step Functions Execution Status Change', ExecutionStatusChange>) => {
    const d = event.detail;
    return onExecutionEnded(deps(), {
      executionName: d.name,
      status: d.status,
      input: d.input ?? null,
      error: d.error ?? null,
      cause: d.cause ?? null,
      startDate: d.startDate ?? null,
      stopDate: d.stopDate ?? null,
    });
  }).use(observe('engine'));

export const handler = createHandler(depsFromEnv('safetyNet'));
