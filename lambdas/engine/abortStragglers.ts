import middy from '@middy/core';
import { abortStragglers } from '../../core/usecases/workflow.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';

/** AbortStragglers: steps still running after the grace period become Ctd.StepAborted; their sandboxes stop. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string }) => abortStragglers(deps(), event.deploymentId));

export const handler = createHandler(depsFromEnv('abortStragglers'));
