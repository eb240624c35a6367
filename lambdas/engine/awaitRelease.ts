import middy from '@middy/core';
import { awaitRelease } from '../../core/usecases/prestartFallback.ts';
import type { CaughtError } from '../../core/usecases/workflow.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/** AwaitRelease (.waitForTaskToken): a pre-started sandbox could not start; registers the token, answered at the step's release. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string; stepId: string; taskToken: string; error?: CaughtError }) => {
    await awaitRelease(deps(), event);
  }).use(observe('engine'));

export const handler = createHandler(depsFromEnv('awaitRelease'));
