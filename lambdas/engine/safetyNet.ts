import middy from '@middy/core';
import type { EventBridgeEvent } from 'aws-lambda';
import { executionEndedOutsideCleanup } from '../../core/usecases/finalize.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

interface ExecutionStatusChange {
  executionArn: string;
  name: string;
  status: string;
}

/**
 * EventBridge "Step Functions Execution Status Change" (FAILED, TIMED_OUT, ABORTED): an execution
 * that ended outside Cleanup must not leave its secrets behind. The execution name is the deployment id.
 */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: EventBridgeEvent<'Step Functions Execution Status Change', ExecutionStatusChange>) => {
    await executionEndedOutsideCleanup(deps(), {
      deploymentId: event.detail.name,
      executionStatus: event.detail.status,
      reason: `the execution ended with status ${event.detail.status} outside Cleanup`,
    });
  }).use(observe('engine'));

export const handler = createHandler(depsFromEnv('safetyNet'));
