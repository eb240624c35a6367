import middy from '@middy/core';
import { gracePeriod } from '../../core/usecases/workflow.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';

/** GracePeriod (.waitForTaskToken): answered as soon as nothing else runs, else the state times out. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string; taskToken: string }) => {
    await gracePeriod(deps(), event);
  });

export const handler = createHandler(depsFromEnv('gracePeriod'));
