import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { ECSClient } from '@aws-sdk/client-ecs';
import { KMSClient } from '@aws-sdk/client-kms';
import { SFNClient } from '@aws-sdk/client-sfn';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

/**
 * SDK v3 clients for the adapters, configured from the environment.
 *
 * Endpoints are deliberately not set here: SDK v3 (verified with the installed clients 3.116x,
 * @smithy/core 3.41 `getEndpointUrlConfig`) reads `AWS_ENDPOINT_URL_<SERVICE_ID>` — DYNAMODB, KMS,
 * SFN, ECS — then `AWS_ENDPOINT_URL`, so local mode redirects the same production code to its
 * loopback services by environment alone (test/unit/adapters-clients.test.ts proves it).
 */

/** The SDK's standard retry mode with one attempt more than its default of 3: Lambdas ride out brief throttling. */
export const DEFAULT_MAX_ATTEMPTS = 4;

export interface AwsClientOptions {
  /** Defaults to AWS_REGION, which Lambda and ECS always set. */
  region?: string;
  maxAttempts?: number;
}

function baseConfig(opts: AwsClientOptions) {
  const region = opts.region ?? process.env.AWS_REGION;
  return {
    ...(region ? { region } : {}),
    maxAttempts: opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    retryMode: 'standard',
  };
}

export function createDynamoDbClient(opts: AwsClientOptions = {}): DynamoDBClient {
  return new DynamoDBClient(baseConfig(opts));
}

/**
 * The document client the store needs: records carry optional fields as `undefined`,
 * which plain marshalling rejects.
 */
export function createDocumentClient(opts: AwsClientOptions = {}): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(createDynamoDbClient(opts), { marshallOptions: { removeUndefinedValues: true } });
}

export function createKmsClient(opts: AwsClientOptions = {}): KMSClient {
  return new KMSClient(baseConfig(opts));
}

export function createSfnClient(opts: AwsClientOptions = {}): SFNClient {
  return new SFNClient(baseConfig(opts));
}

export function createEcsClient(opts: AwsClientOptions = {}): ECSClient {
  return new ECSClient(baseConfig(opts));
}
