import middy from '@middy/core';
import { recordStepResult } from '../../core/usecases/workflow.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/** RecordStepResult: mark the step succeeded and release its dependents. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string; stepId: string; result?: unknown }) => {
    await recordStepResult(deps(), event);
  }).use(observe('engine'));

export const handler = createHandler(depsFromEnv('recordStepResult'));
