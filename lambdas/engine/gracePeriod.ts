import middy from '@middy/core';
import { gracePeriod } from '../../core/usecases/workflow.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/** GracePeriod (.waitForTaskToken): answered as soon as nothing else runs, else the state times out. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string; taskToken: string }) => {
    await gracePeriod(deps(), event);
  }).use(observe('engine'));

export const handler = createHandler(depsFromEnv('gracePeriod'));
