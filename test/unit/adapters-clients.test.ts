import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ListTablesCommand } from '@aws-sdk/client-dynamodb';
import { ListClustersCommand } from '@aws-sdk/client-ecs';
import { ListKeysCommand } from '@aws-sdk/client-kms';
import { ListStateMachinesCommand } from '@aws-sdk/client-sfn';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  createDocumentClient,
  createDynamoDbClient,
  createEcsClient,
  createKmsClient,
  createSfnClient,
} from '../../adapters/aws/clients.ts';

/** A loopback server that answers every AWS JSON call with `{}` and records its target header. */
let server: Server;
let url: string;
const seen: IncomingHttpHeaders[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    seen.push(req.headers);
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  seen.length = 0;
  vi.stubEnv('AWS_REGION', 'eu-west-1');
  vi.stubEnv('AWS_ACCESS_KEY_ID', 'test');
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'test');
  vi.stubEnv('AWS_ENDPOINT_URL', undefined);
  vi.stubEnv('AWS_PROFILE', undefined);
});
afterEach(() => {
  vi.unstubAllEnvs();
});

describe('Module: clients', () => {
  it.each([
    { name: 'DynamoDBClient', service: 'DYNAMODB', call: () => createDynamoDbClient().send(new ListTablesCommand({})), target: 'DynamoDB_20120810.ListTables' },
    { name: 'DynamoDBDocumentClient', service: 'DYNAMODB', call: () => createDocumentClient().send(new ListTablesCommand({})), target: 'DynamoDB_20120810.ListTables' },
    { name: 'KMSClient', service: 'KMS', call: () => createKmsClient().send(new ListKeysCommand({})), target: 'TrentService.ListKeys' },
    { name: 'SFNClient', service: 'SFN', call: () => createSfnClient().send(new ListStateMachinesCommand({})), target: 'AWSStepFunctions.ListStateMachines' },
    { name: 'ECSClient', service: 'ECS', call: () => createEcsClient().send(new ListClustersCommand({})), target: 'AmazonEC2ContainerServiceV20141113.ListClusters' },
  ])('sends $name calls to AWS_ENDPOINT_URL_$service', async ({ service, call, target }) => {
    vi.stubEnv(`AWS_ENDPOINT_URL_${service}`, url);
    await call();
    expect(seen.map((h) => h['x-amz-target'])).toEqual([target]);
    expect(seen[0]?.authorization).toContain('/eu-west-1/');
  });

  it('applies the default retry budget', async () => {
    expect(await createSfnClient().config.maxAttempts()).toBe(4);
    expect(await createKmsClient({ maxAttempts: 2 }).config.maxAttempts()).toBe(2);
  });
});
