import { Logger } from '@aws-lambda-powertools/logger';
import type { EngineDeps } from '../../core/usecases/deps.ts';
import { systemClock, type SandboxLauncher } from '../../core/ports.ts';
import { cloudDriverFor, type CloudConfig } from '../cloudDrivers.ts';
import { createDocumentClient, createEcsClient, createKmsClient, createSfnClient } from './clients.ts';
import { DynamoDeploymentStore } from './dynamoStore.ts';
import { EcsSandboxLauncher } from './ecsSandbox.ts';
import { KmsSecretVault } from './kmsVault.ts';
import { SfnExecutionService } from './sfnExecutions.ts';

/** Where the engine's AWS resources are; Lambda and the sandbox read it from their environment. */
export interface EngineConfig {
  region: string;
  tableName: string;
  kmsKeyId: string;
  stateMachineArn: string;
  clusterArn: string;
  cloud: CloudConfig;
  /** Local mode: the engine's own console instead of the AWS console. */
  consoleBaseUrl?: string;
}

export function engineConfigFromEnv(env: NodeJS.ProcessEnv): EngineConfig {
  const need = (name: string): string => {
    const value = env[name];
    if (!value) throw new Error(`environment variable ${name} is not set`);
    return value;
  };
  return {
    region: need('AWS_REGION'),
    tableName: need('CTD_TABLE_NAME'),
    kmsKeyId: env.CTD_KMS_KEY_ID ?? '',
    stateMachineArn: env.CTD_STATE_MACHINE_ARN ?? '',
    clusterArn: env.CTD_CLUSTER_ARN ?? '',
    cloud: { kind: env.CTD_CLOUD ?? 'local', endpoint: env.CTD_CLOUD_ENDPOINT ?? '' },
    ...(env.CTD_CONSOLE_URL ? { consoleBaseUrl: env.CTD_CONSOLE_URL } : {}),
  };
}

/**
 * The same adapters serve Lambda and the local engine; local mode changes only endpoints
 * (AWS_ENDPOINT_URL_<SERVICE>) and puts its in-process sandbox launcher in place of ECS.
 */
export function buildEngineDeps(
  config: EngineConfig,
  overrides: { sandboxes?: SandboxLauncher; log?: EngineDeps['log'] } = {},
): EngineDeps {
  const clientOptions = { region: config.region };
  const cloud = cloudDriverFor(config.cloud);
  return {
    store: new DynamoDeploymentStore({ client: createDocumentClient(clientOptions), tableName: config.tableName }),
    vault: new KmsSecretVault({ client: createKmsClient(clientOptions), keyId: config.kmsKeyId }),
    executions: new SfnExecutionService({
      client: createSfnClient(clientOptions),
      stateMachineArn: config.stateMachineArn,
      region: config.region,
      ...(config.consoleBaseUrl ? { consoleBaseUrl: config.consoleBaseUrl } : {}),
    }),
    sandboxes: overrides.sandboxes ?? new EcsSandboxLauncher({ client: createEcsClient(clientOptions), cluster: config.clusterArn }),
    identity: cloud,
    clock: systemClock,
    log: overrides.log ?? powertoolsLog(),
  };
}

export function engineDepsFromEnv(env: NodeJS.ProcessEnv): EngineDeps {
  return buildEngineDeps(engineConfigFromEnv(env));
}

function powertoolsLog(): EngineDeps['log'] {
  const logger = new Logger({ serviceName: 'ctd-engine' });
  return (message, details) => logger.info(message, details ?? {});
}
