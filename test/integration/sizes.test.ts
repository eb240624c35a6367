import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDeploymentStore } from '../../adapters/aws/dynamoStore.ts';
import { NotFoundError, ValidationError } from '../../core/errors.ts';
import { cancelDeployment } from '../../core/usecases/cancel.ts';
import { getDeployment, getHistory, getLogs } from '../../core/usecases/queries.ts';
import type { EngineDeps } from '../../core/usecases/deps.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { startTestDynamo, type TestDynamo } from '../helpers/dynalite.ts';
import { memoryDeps } from '../helpers/memoryEngine.ts';

/** Inputs that pass the schema's shape but not DynamoDB's 400 KB item limit: a 400, nothing stored. */

const base = { name: 'demo', bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' } };
const oneStep = { workflow: { steps: [{ id: 'a', action: 'run', command: 'true' }] } };

let dynamo: TestDynamo;
let deps: EngineDeps;
beforeAll(async () => {
  dynamo = await startTestDynamo();
  const clock = { now: () => Date.now() };
  deps = { ...memoryDeps(), clock, store: new DynamoDeploymentStore({ client: dynamo.client, tableName: dynamo.tableName, clock }) };
});
afterAll(async () => dynamo.close());

const itemCount = async () => (await dynamo.client.send(new ScanCommand({ TableName: dynamo.tableName }))).Items?.length ?? 0;

describe('Sizes the store cannot hold', () => {
  it.each<[string, unknown, RegExp]>([
    ['a 450 KB command', { ...base, workflow: { steps: [{ id: 'a', action: 'run', command: 'x'.repeat(450_000) }] } }, /^workflow\.steps\[0\]: step "a" is 440 KB once stored, over the 64 KB limit/],
    [
      '200 steps of 3 KB',
      { ...base, workflow: { steps: Array.from({ length: 200 }, (_, i) => ({ id: `s${i}`, action: 'run', command: 'y'.repeat(3000) })) } },
      /^workflow: the deployment without its files is \d+ KB once stored, over the 300 KB limit/,
    ],
    ['3,000 empty files', { ...base, ...oneStep, files: Object.fromEntries(Array.from({ length: 3000 }, (_, i) => [`f${i}.txt`, ''])) }, /^files: 3000 files, over the 1000-file limit/],
  ])('refuses %s with a 400 naming the field, and stores nothing', async (_label, body, message) => {
    const before = await itemCount();
    const submit = submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body });
    await expect(submit).rejects.toBeInstanceOf(ValidationError);
    await expect(submit).rejects.toThrow(message);
    expect(await itemCount()).toBe(before);
  });

  it('answers "not found" for a 3 KB id on every read and on cancel, without echoing it whole', async () => {
    const id = `d-${'x'.repeat(3000)}`;
    for (const call of [
      () => getDeployment(deps, 't1', id),
      () => getHistory(deps, 't1', id),
      () => getLogs(deps, 't1', id),
      () => cancelDeployment(deps, 't1', id),
    ]) {
      const error = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(NotFoundError);
      expect((error as Error).message.length).toBeLessThan(100);
    }
  });

  it('refuses an oversized step filter on logs as a 400', async () => {
    const { deploymentId } = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body: { ...base, ...oneStep } });
    await expect(getLogs(deps, 't1', deploymentId, 's'.repeat(2000))).rejects.toBeInstanceOf(ValidationError);
  });
});
