import middy from '@middy/core';
import { deleteSecrets, type CleanupState } from '../../core/usecases/finalize.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/** DeleteSecrets: the token and SSH key items go, the final status is recorded. */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: { deploymentId: string; state?: CleanupState }) => deleteSecrets(deps(), event.deploymentId, event.state ?? {})).use(observe('engine'));

export const handler = createHandler(depsFromEnv('deleteSecrets'));
