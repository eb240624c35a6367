import middy from '@middy/core';
import { recordStepFailure, type CaughtError } from '../../core/usecases/workflow.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/** RecordStepFailure: mark the step, skip what has not started; answers whether to run the grace period. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string; stepId: string; error?: CaughtError }) => recordStepFailure(deps(), event)).use(observe('engine'));

export const handler = createHandler(depsFromEnv('recordStepFailure'));
