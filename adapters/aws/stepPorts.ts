import { systemClock } from '../../core/ports.ts';
import type { Clock, CloudDriver, DeploymentStore, ExecutionService, SecretVault } from '../../core/ports.ts';
import { ENV } from '../../core/config/names.ts';
import { parseConfig, type ConfigSection } from '../../core/config/schema.ts';
import { cloudConfigFromEnv, type CloudConfig } from '../cloudConfig.ts';
import { deferredCloudDriver } from '../deferredCloudDriver.ts';
import { createDocumentClient, createKmsClient, createSfnClient } from './clients.ts';
import { DynamoDeploymentStore } from './dynamoStore.ts';
import { KmsSecretVault } from './kmsVault.ts';
import { SfnExecutionService } from './sfnExecutions.ts';

/** Where the engine's AWS resources are; Lambda and the sandbox read it from their environment. */
export interface EngineConfig {
  region: string;
  tableName: string;
  kmsKeyId: string;
  /** Submit only: the principals each deployment's decrypt grant names. */
  tokenGrants?: { decrypter: string; retirer: string };
  /** How this process ends a deployment's grant (lambdas/catalog.ts `shredsTokens`); retire by default. */
  shredBy?: 'retire' | 'revoke';
  stateMachineArn: string;
  clusterArn: string;
  cloud: CloudConfig;
  /** Local mode: the engine's own console instead of the AWS console. */
  consoleBaseUrl?: string;
}

/**
 * The engine configuration of one process, from its environment parsed with the schema of its
 * configuration sections (core/config/schema.ts): a missing or wrong variable throws, naming it.
 * Sections a process does not use leave their fields empty; the port that needs them is never built.
 */
export function engineConfigFromEnv(
  env: Record<string, string | undefined>,
  who = 'the engine',
  sections: readonly ConfigSection[] = ['store'],
): EngineConfig {
  const c = parseConfig(who, sections, env);
  // Fields outside the process's sections are read as given (local mode passes one environment to all).
  const get = (name: string) => c[name] ?? env[name];
  return {
    region: get('AWS_REGION') ?? '',
    tableName: get(ENV.tableName) ?? '',
    kmsKeyId: get(ENV.kmsKeyId) ?? '',
    ...(get(ENV.tokenDecrypter) && get(ENV.tokenRetirer) ? { tokenGrants: { decrypter: get(ENV.tokenDecrypter)!, retirer: get(ENV.tokenRetirer)! } } : {}),
    stateMachineArn: get(ENV.stateMachineArn) ?? '',
    clusterArn: get(ENV.clusterArn) ?? '',
    // Validated by the cloud section above; adapters/cloudDrivers.ts owns the driver's shape.
    cloud: cloudConfigFromEnv(env),
    ...(get(ENV.consoleUrl) ? { consoleBaseUrl: get(ENV.consoleUrl)! } : {}),
  };
}

/** The ports a step runner needs; kept apart from the Lambdas' extras so a sandbox loads only these clients. */
export interface StepPorts {
  store: DeploymentStore;
  vault: SecretVault;
  executions: ExecutionService;
  /** Built on first call, its module loaded on its first method call: a process that never acts on the cloud loads no driver (its settings were checked at start-up). */
  cloud: () => CloudDriver;
  clock: Clock;
}

export function buildStepPorts(config: EngineConfig): StepPorts {
  const clientOptions = { region: config.region };
  return {
    store: new DynamoDeploymentStore({ client: createDocumentClient(clientOptions), tableName: config.tableName }),
    vault: new KmsSecretVault({ client: createKmsClient(clientOptions), keyId: config.kmsKeyId, ...(config.tokenGrants ? { grants: config.tokenGrants } : {}), ...(config.shredBy ? { shredBy: config.shredBy } : {}) }),
    executions: new SfnExecutionService({
      client: createSfnClient(clientOptions),
      stateMachineArn: config.stateMachineArn,
      region: config.region,
      ...(config.consoleBaseUrl ? { consoleBaseUrl: config.consoleBaseUrl } : {}),
    }),
    cloud: lazy(() => deferredCloudDriver(async () => (await import('../cloudDrivers.ts')).cloudDriverFor(config.cloud))),
    clock: systemClock,
  };
}

/** Builds once, on first call; a failure is thrown to that caller and retried by the next. */
export function lazy<T>(build: () => T): () => T {
  let value: { v: T } | undefined;
  return () => (value ??= { v: build() }).v;
}
