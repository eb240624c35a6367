import middy from '@middy/core';
import { awaitDependencies } from '../../core/usecases/workflow.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/** AwaitDependencies (.waitForTaskToken): registers the token; the answer comes via SendTaskSuccess. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string; stepId: string; taskToken: string }) => {
    await awaitDependencies(deps(), event);
  }).use(observe('engine'));

export const handler = createHandler(depsFromEnv('awaitDependencies'));
