import { systemClock } from '../../core/ports.ts';
import type { Clock, CloudDriver, DeploymentStore, ExecutionService, SecretVault } from '../../core/ports.ts';
import { cloudConfigFromEnv, cloudDriverFor, type CloudConfig } from '../cloudDrivers.ts';
import { createDocumentClient, createKmsClient, createSfnClient } from './clients.ts';
import { DynamoDeploymentStore } from './dynamoStore.ts';
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
    cloud: cloudConfigFromEnv(env),
    ...(env.CTD_CONSOLE_URL ? { consoleBaseUrl: env.CTD_CONSOLE_URL } : {}),
  };
}

/** The ports a step runner needs; kept apart from the Lambdas' extras so a sandbox loads only these clients. */
export interface StepPorts {
  store: DeploymentStore;
  vault: SecretVault;
  executions: ExecutionService;
  cloud: CloudDriver;
  clock: Clock;
}

export function buildStepPorts(config: EngineConfig): StepPorts {
  const clientOptions = { region: config.region };
  return {
    store: new DynamoDeploymentStore({ client: createDocumentClient(clientOptions), tableName: config.tableName }),
    vault: new KmsSecretVault({ client: createKmsClient(clientOptions), keyId: config.kmsKeyId }),
    executions: new SfnExecutionService({
      client: createSfnClient(clientOptions),
      stateMachineArn: config.stateMachineArn,
      region: config.region,
      ...(config.consoleBaseUrl ? { consoleBaseUrl: config.consoleBaseUrl } : {}),
    }),
    cloud: cloudDriverFor(config.cloud),
    clock: systemClock,
  };
}
