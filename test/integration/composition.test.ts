import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import type { APIGatewayProxyEvent, Context } from 'aws-lambda';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildEngineDeps } from '../../adapters/aws/engineDeps.ts';
import { buildStepPorts, engineConfigFromEnv } from '../../adapters/aws/stepPorts.ts';
import { SANDBOX_CONFIG } from '../../core/config/schema.ts';
import { LAMBDAS, type LambdaName } from '../../lambdas/catalog.ts';
import { startLocalKms, type LocalKms } from '../../local/services/kms.ts';
import { logicalId, synthCtdStack } from '../cdk/helpers.ts';
import { startTestDynamo, type TestDynamo } from '../helpers/dynalite.ts';

/**
 * Composition from the template: every Lambda and the sandbox task get exactly the environment the
 * synthesized stack gives them (CloudFormation references resolved to local stand-ins: dynalite for
 * the table, the local KMS for the key), plus what the runtime itself sets (AWS_REGION and, here,
 * the AWS endpoints). Each one parses it with its own schema, builds its ports the way it does in
 * AWS, and does real work against the local services. A variable cdk forgets or misnames fails here.
 */

const REGION = 'us-east-1';
const ACCOUNT = '000000000000';
const { stack, template } = synthCtdStack();
const resources = template.toJSON().Resources as Record<string, { Type: string; Properties: Record<string, unknown> }>;

let dynamo: TestDynamo;
let kms: LocalKms;
let kmsDir: string;
const saved = { ...process.env };

/** CloudFormation intrinsics → the local value of what they name. */
function resolve(value: unknown): string {
  if (typeof value === 'string') return value;
  const v = value as Record<string, unknown>;
  if ('Fn::Join' in v) {
    const [sep, parts] = v['Fn::Join'] as [string, unknown[]];
    return parts.map(resolve).join(sep);
  }
  if ('Ref' in v) {
    const ref = v.Ref as string;
    const pseudo: Record<string, string> = { 'AWS::Partition': 'aws', 'AWS::Region': REGION, 'AWS::AccountId': ACCOUNT, 'AWS::URLSuffix': 'amazonaws.com' };
    if (pseudo[ref]) return pseudo[ref];
    if (ref === logicalId(stack.data.table)) return dynamo.tableName;
    if (ref === logicalId(stack.tokenKey.key)) return kms.keyId;
    const type = resources[ref]?.Type;
    if (type === 'AWS::EC2::EIP') return `203.0.113.${stack.network.egressIps.findIndex((e) => logicalId(e) === ref) + 1}`;
    throw new Error(`no local stand-in for Ref ${ref} (${type})`);
  }
  if ('Fn::GetAtt' in v) {
    const [id, attr] = v['Fn::GetAtt'] as [string, string];
    if (id === logicalId(stack.sandbox.cluster) && attr === 'Arn') return `arn:aws:ecs:${REGION}:${ACCOUNT}:cluster/ctd`;
    // The roles submit names in each deployment's grant (CTD_TOKEN_DECRYPTER, CTD_TOKEN_RETIRER).
    if (resources[id]?.Type === 'AWS::IAM::Role' && attr === 'Arn') return `arn:aws:iam::${ACCOUNT}:role/${id}`;
    throw new Error(`no local stand-in for GetAtt ${id}.${attr}`);
  }
  throw new Error(`intrinsic not understood: ${JSON.stringify(value)}`);
}

function templateEnv(variables: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(variables).map(([k, v]) => [k, resolve(v)]));
}

/** What the runtime adds (Lambda and Fargate set AWS_REGION) and where the AWS services are here. */
const runtimeEnv = () => ({
  AWS_REGION: REGION,
  AWS_ACCESS_KEY_ID: 'local',
  AWS_SECRET_ACCESS_KEY: 'local',
  AWS_ENDPOINT_URL_DYNAMODB: dynamo.endpoint,
  AWS_ENDPOINT_URL_KMS: kms.url,
});

beforeAll(async () => {
  dynamo = await startTestDynamo('ctd-composition');
  kmsDir = mkdtempSync(path.join(tmpdir(), 'ctd-composition-kms-'));
  kms = await startLocalKms({ stateDir: kmsDir });
  Object.assign(process.env, runtimeEnv());
});

afterAll(async () => {
  process.env = saved;
  await kms?.close();
  await dynamo?.close();
  rmSync(kmsDir, { recursive: true, force: true });
});

const functions = { ...stack.api.functions, ...stack.engine.functions } as Record<LambdaName, (typeof stack.api.functions)['get']>;

describe('Composition: each process from the environment the template gives it', () => {
  it.each(Object.keys(LAMBDAS) as LambdaName[])('%s parses its template environment and reads the table through its own ports', async (name) => {
    const variables = (resources[logicalId(functions[name])]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    const env = { ...templateEnv(variables), ...runtimeEnv() };
    const config = engineConfigFromEnv(env, `function ${name}`, LAMBDAS[name].config);
    const deps = buildEngineDeps(config, { log: () => {} });
    if (LAMBDAS[name].config.includes('store')) expect(await deps.store.getDeployment('d-composition-none')).toBeUndefined();
  });

  it('serves GET /deployments through the list handler built from its template environment', async () => {
    const variables = (resources[logicalId(functions.list)]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables;
    const env = { ...templateEnv(variables), ...runtimeEnv() };
    const { createHandler } = await import('../../lambdas/api/list.ts');
    const deps = buildEngineDeps(engineConfigFromEnv(env, 'function list', LAMBDAS.list.config), { log: () => {} });
    const event = { headers: {}, queryStringParameters: null, pathParameters: null, requestContext: { authorizer: { tenantId: 't-composition' } } } as unknown as APIGatewayProxyEvent;
    const res = await createHandler(() => deps)(event, {} as Context);
    expect(res.statusCode).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ items: [] });
  });

  it('gives the sandbox task what its schema needs, and its vault decrypts with the template\'s key', async () => {
    const container = (Object.values(template.findResources('AWS::ECS::TaskDefinition'))[0]!.Properties.ContainerDefinitions as { Environment: { Name: string; Value: unknown }[] }[])[0]!;
    const env: Record<string, string> = { ...templateEnv(Object.fromEntries(container.Environment.map((e) => [e.Name, e.Value]))), ...runtimeEnv() };
    expect(env.CTD_EGRESS_ADDRESSES).toBe('203.0.113.1,203.0.113.2');
    expect(env.CTD_CLOUD).toBe('openstack');
    const { store, vault } = buildStepPorts(engineConfigFromEnv(env, 'the sandbox', SANDBOX_CONFIG));
    expect(await store.getDeployment('d-composition-none')).toBeUndefined();
    // Submit encrypts (creating the deployment's grant) with its own template environment; the sandbox decrypts.
    const submitEnv = { ...templateEnv((resources[logicalId(functions.submit)]!.Properties.Environment as { Variables: Record<string, unknown> }).Variables), ...runtimeEnv() };
    const submitPorts = buildStepPorts(engineConfigFromEnv(submitEnv, 'function submit', LAMBDAS.submit.config));
    const context = { deploymentId: 'd-1', tenantId: 't-1' };
    expect(await vault.decrypt(await submitPorts.vault.encrypt('tok', context), context)).toBe('tok');
    await expect(vault.encrypt('tok', context), 'the sandbox never encrypts').rejects.toThrow(/CTD_TOKEN_DECRYPTER/);
  });

  it('refuses to start a process whose variable is missing or wrong, naming it', () => {
    expect(() => engineConfigFromEnv({ AWS_REGION: REGION }, 'function prepare', LAMBDAS.prepare.config)).toThrow(
      /configuration of function prepare is invalid: CTD_TABLE_NAME: required; CTD_STATE_MACHINE_ARN: required/,
    );
    expect(() =>
      engineConfigFromEnv({ AWS_REGION: REGION, CTD_TABLE_NAME: 't', CTD_KMS_KEY_ID: 'k', CTD_CLOUD: 'aws' }, 'the sandbox', SANDBOX_CONFIG),
    ).toThrow(/CTD_CLOUD: unknown cloud kind \(known: openstack\)/);
  });
});
