/**
 * Names shared by the CDK app, local mode and the runtime: one literal each, so a renamed
 * variable cannot drift between who sets it and who reads it.
 */

/** Environment variables of the Lambdas and the sandbox. */
export const ENV = {
  tableName: 'CTD_TABLE_NAME',
  kmsKeyId: 'CTD_KMS_KEY_ID',
  /** The principal a deployment's grant lets decrypt its token (the sandbox task role). */
  tokenDecrypter: 'CTD_TOKEN_DECRYPTER',
  /** The principal that retires the grant at cleanup (the DeleteSecrets function's role). */
  tokenRetirer: 'CTD_TOKEN_RETIRER',
  stateMachineArn: 'CTD_STATE_MACHINE_ARN',
  clusterArn: 'CTD_CLUSTER_ARN',
  consoleUrl: 'CTD_CONSOLE_URL',
  cloud: 'CTD_CLOUD',
  keystoneUrl: 'CTD_KEYSTONE_URL',
  egressAddresses: 'CTD_EGRESS_ADDRESSES',
  osInterface: 'CTD_OS_INTERFACE',
  osRegion: 'CTD_OS_REGION',
  timeScale: 'CTD_TIME_SCALE',
  /**
   * Pre-start (issue 12): on|off, the cap on waiting sandboxes, the start the lookahead hides, the longest one
   * sandbox waits once up (adapters/aws/engineDeps.ts).
   */
  prestart: 'CTD_PRESTART',
  prestartMaxWaiting: 'CTD_PRESTART_MAX_WAITING',
  prestartStartSeconds: 'CTD_PRESTART_START_SECONDS',
  prestartMaxIdleSeconds: 'CTD_PRESTART_MAX_IDLE_SECONDS',
  logLevel: 'POWERTOOLS_LOG_LEVEL',
} as const;

/**
 * Where the engine's logs and metrics go: one CloudWatch namespace for its EMF metrics, one
 * service name per kind of process (the `service` key of every log line and metric dimension).
 */
export const TELEMETRY = {
  namespace: 'CtdOrchestrator',
  services: { api: 'ctd-api', engine: 'ctd-engine', sandbox: 'ctd-sandbox' },
  /** Lambdas and the sandbox start at this level; POWERTOOLS_LOG_LEVEL changes it without a deploy. */
  logLevel: 'INFO',
} as const;

export type TelemetryService = keyof typeof TELEMETRY.services;

/** Per-task variables the state machine sets on the runner container (ContainerOverrides). */
export const TASK_ENV = {
  deploymentId: 'CTD_DEPLOYMENT_ID',
  stepId: 'CTD_STEP_ID',
  taskToken: 'CTD_TASK_TOKEN',
  /** Local mode only: ECS's task ARN comes from the task metadata endpoint in AWS. */
  taskArn: 'CTD_TASK_ARN',
  /** The step's release as JSON (AwaitDependencies' answer); local ECS boots released steps' sandboxes before pre-started ones. */
  release: 'CTD_RELEASE',
} as const;

/** The ASL overrides the sandbox's container by this name (`Overrides.ContainerOverrides[].Name`). */
export const RUNNER_CONTAINER_NAME = 'runner';

/** The line a local runner started ahead (task on stdin) prints once its modules are loaded. */
export const RUNNER_READY = 'ctd-runner-ready';

/** Every line on a local runner's stdin after its task is a wake: its content is ignored (it carries nothing). */
export const RUNNER_WAKE = 'wake';

/**
 * A runner's release poll, `first,max` in ms before the time scale (default RELEASE_POLL_MS, sandbox/runner.ts):
 * local runners are woken at their release and may poll less often.
 */
export const RELEASE_POLL_ENV = 'CTD_RELEASE_POLL_MS';

/** The cloud kinds the engine can act on: one production driver (docs/OPENSTACK.md). */
export const CLOUD_KINDS = ['openstack'] as const;
export type CloudKind = (typeof CLOUD_KINDS)[number];
