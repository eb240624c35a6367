import middy from '@middy/core';
import { sandboxStopOf, type EcsTaskStateChangeEvent } from '../../adapters/aws/ecsTaskEvents.ts';
import { RUNNER_CONTAINER_NAME } from '../../core/config/names.ts';
import { sandboxStopped } from '../../core/usecases/sandboxStopped.ts';
import { depsFromEnv, type DepsProvider } from '../deps.ts';
import { observe } from '../observability.ts';

/**
 * EventBridge "ECS Task State Change" → STOPPED in the sandbox cluster (locally: the launcher's
 * same event): a sandbox that stopped without answering fails its step at once with Ctd.SandboxLost.
 */
export const createHandler = (deps: DepsProvider) =>
  middy(async (event: EcsTaskStateChangeEvent) => {
    const stop = sandboxStopOf(event, RUNNER_CONTAINER_NAME);
    return stop ? sandboxStopped(deps(), stop) : { failed: false };
  }).use(observe('engine'));

export const handler = createHandler(depsFromEnv('sandboxStopped'));
