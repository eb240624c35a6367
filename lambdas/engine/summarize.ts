import middy from '@middy/core';
import { summarize } from '../../core/usecases/finalize.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';

/** Summarize: the deployment's outcome from its steps. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string }) => summarize(deps(), event.deploymentId));

export const handler = createHandler(depsFromEnv('summarize'));
