import middy from '@middy/core';
import { recordStepResult } from '../../core/usecases/workflow.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';

/** RecordStepResult: mark the step succeeded and release its dependents. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string; stepId: string; result?: unknown }) => {
    await recordStepResult(deps(), event);
  });

export const handler = createHandler(depsFromEnv('recordStepResult'));
