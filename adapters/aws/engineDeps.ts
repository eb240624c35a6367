import { DEFAULT_PRESTART_MAX_IDLE_SECONDS, type EngineDeps, type PrestartPolicy } from '../../core/usecases/deps.ts';
import { LOOKAHEAD_STARTS } from '../../core/usecases/release.ts';
import type { SandboxLauncher } from '../../core/ports.ts';
import type { MetricsPort } from '../../core/metrics.ts';
import { ENV } from '../../core/config/names.ts';
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
  overrides: { sandboxes?: SandboxLauncher; log?: EngineDeps['log']; metrics?: MetricsPort; telemetry?: Telemetry; prestart?: PrestartPolicy | false } = {},
): EngineDeps {
  const prestart = overrides.prestart === undefined ? prestartFromEnv(process.env) : overrides.prestart;
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
    ...(prestart ? { prestart } : {}),
  };
}

/**
 * Default: at most this many pre-started sandboxes wait per deployment. A cap the workflow outgrows costs about
 * one start more for each time it is filled (docs/BENCHMARKS.md §4: the 60-step DAG at 20 lost two starts); 100
 * lets a workflow of up to 100 steps start every sandbox ahead, and is Fargate's launch burst (100 tasks, refilled
 * at 20 a second), so one deployment's pre-starts alone never exceed it. What idling costs is bounded per sandbox
 * by the idle limit, and on a re-run by the lookahead; the cap is the account's vCPU quota's concern (docs/DEPLOY-AWS.md).
 */
export const DEFAULT_PRESTART_MAX_WAITING = 100;

/** The start pre-start hides until a deployment measured its own: Fargate's p90 (issue 12: median 45 s, p90 60 s). */
export const DEFAULT_PRESTART_START_SECONDS = 60;

/**
 * CTD_PRESTART: `on` (default) starts a step's sandbox once its dependencies started; `off` only
 * at its release. CTD_PRESTART_MAX_WAITING bounds the sandboxes waiting at once per deployment;
 * CTD_PRESTART_START_SECONDS is the start the lookahead by time hides (core/usecases/lookahead.ts);
 * CTD_PRESTART_MAX_IDLE_SECONDS the longest one sandbox, once up, waits for its release.
 */
export function prestartFromEnv(env: NodeJS.ProcessEnv): PrestartPolicy | false {
  const flag = (env[ENV.prestart] ?? 'on').toLowerCase();
  if (flag === 'off' || flag === 'false' || flag === '0') return false;
  if (flag !== 'on' && flag !== 'true' && flag !== '1') throw new Error(`CTD_PRESTART must be on or off, not "${env.CTD_PRESTART}"`);
  const raw = env[ENV.prestartMaxWaiting];
  const maxWaiting = raw === undefined ? DEFAULT_PRESTART_MAX_WAITING : Number(raw);
  if (!Number.isInteger(maxWaiting) || maxWaiting < 1) throw new Error(`CTD_PRESTART_MAX_WAITING must be a whole number ≥ 1, not "${raw}"`);
  const rawStart = env[ENV.prestartStartSeconds];
  const startSeconds = rawStart === undefined ? DEFAULT_PRESTART_START_SECONDS : Number(rawStart);
  if (!(startSeconds > 0) || !Number.isFinite(startSeconds)) throw new Error(`CTD_PRESTART_START_SECONDS must be a number of seconds > 0, not "${rawStart}"`);
  const rawIdle = env[ENV.prestartMaxIdleSeconds];
  const maxIdleSeconds = rawIdle === undefined ? DEFAULT_PRESTART_MAX_IDLE_SECONDS : Number(rawIdle);
  if (!(maxIdleSeconds > 0) || !Number.isFinite(maxIdleSeconds)) throw new Error(`${ENV.prestartMaxIdleSeconds} must be a number of seconds > 0, not "${rawIdle}"`);
  const tooShort = idleLimitTooShort(maxIdleSeconds, startSeconds);
  if (tooShort) throw new Error(`${ENV.prestartMaxIdleSeconds} ${tooShort} (${ENV.prestartStartSeconds})`);
  return { maxWaiting, startSeconds, maxIdleSeconds };
}

/**
 * An idle limit below the lookahead's reach would stop, by design, the sandboxes the lookahead starts on time: it starts
 * one up to LOOKAHEAD_STARTS starts before the expected release. Says why, or undefined when the limit is long enough.
 */
export function idleLimitTooShort(maxIdleSeconds: number, startSeconds: number): string | undefined {
  const least = LOOKAHEAD_STARTS * startSeconds;
  if (maxIdleSeconds >= least) return undefined;
  return `must be at least ${LOOKAHEAD_STARTS} × the start to hide, ${least} s: the lookahead starts a sandbox up to ${LOOKAHEAD_STARTS} starts before its release`;
}

/** A Lambda's ports: logs and metrics through the handler's own Powertools instances (lambdas/observability.ts). */
export function engineDepsFromEnv(config: EngineConfig, telemetry: Telemetry): EngineDeps {
  return buildEngineDeps(config, { telemetry });
}
