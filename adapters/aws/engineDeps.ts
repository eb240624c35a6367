import { Logger } from '@aws-lambda-powertools/logger';
import type { EngineDeps } from '../../core/usecases/deps.ts';
import type { SandboxLauncher } from '../../core/ports.ts';
import { createEcsClient } from './clients.ts';
import { EcsSandboxLauncher } from './ecsSandbox.ts';
import { buildStepPorts, type EngineConfig } from './stepPorts.ts';

export { engineConfigFromEnv, type EngineConfig } from './stepPorts.ts';

/**
 * The same adapters serve Lambda and the local engine; local mode changes only endpoints
 * (AWS_ENDPOINT_URL_<SERVICE>) and puts its in-process sandbox launcher in place of ECS.
 */
export function buildEngineDeps(
  config: EngineConfig,
  overrides: { sandboxes?: SandboxLauncher; log?: EngineDeps['log'] } = {},
): EngineDeps {
  const { store, vault, executions, cloud, clock } = buildStepPorts(config);
  return {
    store,
    vault,
    executions,
    sandboxes: overrides.sandboxes ?? new EcsSandboxLauncher({ client: createEcsClient({ region: config.region }), cluster: config.clusterArn }),
    // Only the authorizer asks the cloud: the driver is built on first use, so a function without cloud settings still starts.
    identity: { identify: (token) => cloud().identify(token) },
    clock,
    log: overrides.log ?? powertoolsLog(),
  };
}

export function engineDepsFromEnv(config: EngineConfig): EngineDeps {
  return buildEngineDeps(config);
}

function powertoolsLog(): EngineDeps['log'] {
  const logger = new Logger({ serviceName: 'ctd-engine' });
  // An Error under `error` is logged at ERROR level, formatted by Powertools (name, message, stack).
  return (message, details) => (details?.error instanceof Error ? logger.error(message, details) : logger.info(message, details ?? {}));
}
