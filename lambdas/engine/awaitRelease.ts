import middy from '@middy/core';
import { awaitRelease, makeRoom } from '../../core/usecases/prestartFallback.ts';
import type { CaughtError } from '../../core/usecases/workflow.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/**
 * AwaitRelease (.waitForTaskToken): a pre-started sandbox could not start; registers the token, answered at the step's
 * release. MakeRoom (`released`, the same function): a released step's sandbox could not start; answered at once.
 */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string; stepId: string; taskToken: string; error?: CaughtError; released?: boolean }) => {
    const { released, ...input } = event;
    await (released ? makeRoom(deps(), input) : awaitRelease(deps(), input));
  }).use(observe('engine'));

export const handler = createHandler(depsFromEnv('awaitRelease'));
