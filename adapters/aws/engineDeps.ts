import type { EngineDeps } from '../../core/usecases/deps.ts';
import type { SandboxLauncher } from '../../core/ports.ts';
import type { MetricsPort } from '../../core/metrics.ts';
import { createEcsClient } from './clients.ts';
import { EcsSandboxLauncher } from './ecsSandbox.ts';
import { buildStepPorts, type EngineConfig } from './stepPorts.ts';
import { createTelemetry, logPort, metricsPort, type Telemetry } from './telemetry.ts';

export { engineConfigFromEnv, type EngineConfig } from './stepPorts.ts';

/**
 * The same adapters serve Lambda and the local engine; local mode changes only endpoints
 * (AWS_ENDPOINT_URL_<SERVICE>) and puts its in-process sandbox launcher in place of ECS.
 */
export function buildEngineDeps(
  config: EngineConfig,
  overrides: { sandboxes?: SandboxLauncher; log?: EngineDeps['log']; metrics?: MetricsPort; telemetry?: Telemetry } = {},
): EngineDeps {
  const { store, vault, executions, cloud, clock } = buildStepPorts(config);
  const telemetry = () => (overrides.telemetry ??= createTelemetry('engine'));
  return {
    store,
    vault,
    executions,
    sandboxes: overrides.sandboxes ?? new EcsSandboxLauncher({ client: createEcsClient({ region: config.region }), cluster: config.clusterArn }),
    // Only the authorizer asks the cloud: the driver is built on first use, so a function without cloud settings still starts.
    identity: { identify: (token) => cloud().identify(token) },
    clock,
    log: overrides.log ?? logPort(telemetry().logger),
    metrics: overrides.metrics ?? metricsPort(telemetry().metrics),
  };
}

/** A Lambda's ports: logs and metrics through the handler's own Powertools instances (lambdas/observability.ts). */
export function engineDepsFromEnv(config: EngineConfig, telemetry: Telemetry): EngineDeps {
  return buildEngineDeps(config, { telemetry });
}
