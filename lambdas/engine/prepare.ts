import middy from '@middy/core';
import { prepare } from '../../core/usecases/workflow.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/** Prepare: mark the deployment running; give the Map its step ids in topological order. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string }) => prepare(deps(), event.deploymentId)).use(observe('engine'));

export const handler = createHandler(depsFromEnv('prepare'));
