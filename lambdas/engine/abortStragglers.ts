import middy from '@middy/core';
import { abortStragglers } from '../../core/usecases/workflow.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/** AbortStragglers: steps still running after the grace period become Ctd.StepAborted; their sandboxes stop. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string }) => abortStragglers(deps(), event.deploymentId)).use(observe('engine'));

export const handler = createHandler(depsFromEnv('abortStragglers'));
