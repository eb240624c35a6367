import middy from '@middy/core';
import { summarize } from '../../core/usecases/finalize.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/** Summarize: the deployment's outcome from its steps. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string }) => summarize(deps(), event.deploymentId)).use(observe('engine'));

export const handler = createHandler(depsFromEnv('summarize'));
