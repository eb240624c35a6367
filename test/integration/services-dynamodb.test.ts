import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CreateTableCommand, DeleteTableCommand, DescribeTableCommand, ResourceNotFoundException, UpdateTableCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { DynamoDBDocumentClient, GetCommand, PutCommand, QueryCommand } from '@aws-sdk/lib-dynamodb';
import { TABLE, createTableInput } from '../../adapters/aws/table.ts';
import { localDynamoDbClient, startLocalDynamoDb, type LocalDynamoDb } from '../../local/services/dynamodb.ts';

const tableName = 'ctd-test';

describe('Function: startLocalDynamoDb', () => {
  let stateDir: string;
  let db: LocalDynamoDb;
  let raw: DynamoDBClient;
  let doc: DynamoDBDocumentClient;
  let nowMs: number;

  async function start(): Promise<void> {
    db = await startLocalDynamoDb({ stateDir, tableName, sweepIntervalSeconds: 0, now: () => nowMs });
    raw = localDynamoDbClient(db.url);
    doc = DynamoDBDocumentClient.from(raw);
  }

  async function stop(): Promise<void> {
    raw.destroy();
    await db.close();
  }

  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'ctd-ddb-'));
    nowMs = Date.UTC(2030, 0, 1);
    await start();
  });

  afterEach(async () => {
    await stop();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('creates the table exactly as createTableInput defines it', async () => {
    const { Table } = await raw.send(new DescribeTableCommand({ TableName: tableName }));
    const expected = createTableInput(tableName);
    expect(Table?.TableStatus).toBe('ACTIVE');
    expect(Table?.KeySchema).toEqual(expected.KeySchema);
    expect(Table?.AttributeDefinitions).toEqual(expect.arrayContaining(expected.AttributeDefinitions!));
    expect(Table?.BillingModeSummary?.BillingMode ?? 'PAY_PER_REQUEST').toBe('PAY_PER_REQUEST');
    expect(Table?.GlobalSecondaryIndexes?.map((i) => ({ IndexName: i.IndexName, KeySchema: i.KeySchema, Projection: i.Projection }))).toEqual(
      expected.GlobalSecondaryIndexes,
    );
  });

  it('puts, gets and queries the byTenant index', async () => {
    const items = [
      { pk: 'DEP#a', sk: 'META', tenantPk: 'T#1', createdSk: '2030-01-01T00:00:01Z#a', status: 'RUNNING' },
      { pk: 'DEP#b', sk: 'META', tenantPk: 'T#1', createdSk: '2030-01-01T00:00:02Z#b', status: 'DONE' },
      { pk: 'DEP#c', sk: 'META', tenantPk: 'T#2', createdSk: '2030-01-01T00:00:03Z#c', status: 'DONE' },
    ];
    for (const Item of items) await doc.send(new PutCommand({ TableName: tableName, Item }));

    const got = await doc.send(new GetCommand({ TableName: tableName, Key: { pk: 'DEP#a', sk: 'META' } }));
    expect(got.Item).toEqual(items[0]);

    const newestFirst = await doc.send(
      new QueryCommand({
        TableName: tableName,
        IndexName: TABLE.tenantIndex.name,
        KeyConditionExpression: '#t = :t',
        ExpressionAttributeNames: { '#t': TABLE.tenantIndex.partitionKey },
        ExpressionAttributeValues: { ':t': 'T#1' },
        ScanIndexForward: false,
      }),
    );
    expect(newestFirst.Items?.map((i) => i.pk)).toEqual(['DEP#b', 'DEP#a']);
  });

  it('keeps data across close and restart on the same state dir', async () => {
    await doc.send(new PutCommand({ TableName: tableName, Item: { pk: 'DEP#keep', sk: 'META', note: 'survives' } }));
    await stop();
    await start();
    const got = await doc.send(new GetCommand({ TableName: tableName, Key: { pk: 'DEP#keep', sk: 'META' } }));
    expect(got.Item?.note).toBe('survives');
  });

  it('sweeps items whose expiresAt is in the past and keeps the rest', async () => {
    const nowSeconds = Math.floor(nowMs / 1000);
    const put = (sk: string, extra: Record<string, unknown>) =>
      doc.send(new PutCommand({ TableName: tableName, Item: { pk: 'DEP#s', sk, ...extra } }));
    await put('SECRET#token', { [TABLE.ttlAttribute]: nowSeconds - 10 });
    await put('SECRET#sshkey', { [TABLE.ttlAttribute]: nowSeconds - 1 });
    await put('IDEMP', { [TABLE.ttlAttribute]: nowSeconds + 3600 });
    await put('META', {});
    // DynamoDB TTL ignores non-Number values; so does the sweeper.
    await put('STEP#x', { [TABLE.ttlAttribute]: String(nowSeconds - 100) });

    expect(await db.sweepExpired()).toBe(2);

    const remaining = await doc.send(
      new QueryCommand({ TableName: tableName, KeyConditionExpression: 'pk = :pk', ExpressionAttributeValues: { ':pk': 'DEP#s' } }),
    );
    expect(remaining.Items?.map((i) => i.sk).sort()).toEqual(['IDEMP', 'META', 'STEP#x']);

    nowMs += 7200 * 1000;
    expect(await db.sweepExpired()).toBe(1);
  });

  it('reads the table description from memory, and sees every change of it (delete, re-create, update)', async () => {
    const other = 'ctd-test-other';
    const key = { pk: 'DEP#c', sk: 'META' };
    // Without the engine's index, so UpdateTable can switch its billing mode alone.
    const { GlobalSecondaryIndexes: _indexes, ...engineTable } = createTableInput(other);
    const createOther = { ...engineTable, AttributeDefinitions: engineTable.AttributeDefinitions!.filter((a) => a.AttributeName === TABLE.partitionKey || a.AttributeName === TABLE.sortKey) };
    await raw.send(new CreateTableCommand(createOther));
    await expect.poll(async () => (await raw.send(new DescribeTableCommand({ TableName: other }))).Table?.TableStatus).toBe('ACTIVE');
    await doc.send(new PutCommand({ TableName: other, Item: { ...key, note: 'first' } }));
    const before = await db.tableCacheStats();
    for (let i = 0; i < 3; i++) expect((await doc.send(new GetCommand({ TableName: other, Key: key }))).Item?.note).toBe('first');
    // The repeated reads found the description in memory, not in LevelDB.
    expect((await db.tableCacheStats()).hits - before.hits).toBeGreaterThanOrEqual(3);

    // A deleted table is gone for the next request, as in DynamoDB: no stale description answers it.
    await raw.send(new DeleteTableCommand({ TableName: other }));
    await expect.poll(() => doc.send(new GetCommand({ TableName: other, Key: key })).then(() => 'found', (e: unknown) => e instanceof ResourceNotFoundException)).toBe(true);
    await expect(doc.send(new PutCommand({ TableName: other, Item: key }))).rejects.toBeInstanceOf(ResourceNotFoundException);

    // Re-created empty; then an update (on-demand → provisioned) shows in the next description.
    await raw.send(new CreateTableCommand(createOther));
    await expect.poll(async () => (await raw.send(new DescribeTableCommand({ TableName: other }))).Table?.TableStatus).toBe('ACTIVE');
    expect((await doc.send(new GetCommand({ TableName: other, Key: key }))).Item).toBeUndefined();
    await raw.send(new UpdateTableCommand({ TableName: other, BillingMode: 'PROVISIONED', ProvisionedThroughput: { ReadCapacityUnits: 7, WriteCapacityUnits: 3 } }));
    await expect.poll(async () => (await raw.send(new DescribeTableCommand({ TableName: other }))).Table?.ProvisionedThroughput?.ReadCapacityUnits).toBe(7);
    // The engine's own table was never touched by any of it.
    expect((await raw.send(new DescribeTableCommand({ TableName: tableName }))).Table?.TableStatus).toBe('ACTIVE');
  });

  it('runs the sweeper on its timer', async () => {
    await stop();
    db = await startLocalDynamoDb({ stateDir, tableName, sweepIntervalSeconds: 0.05, now: () => nowMs });
    raw = localDynamoDbClient(db.url);
    doc = DynamoDBDocumentClient.from(raw);
    await doc.send(new PutCommand({ TableName: tableName, Item: { pk: 'DEP#t', sk: 'SECRET#token', [TABLE.ttlAttribute]: 1 } }));
    await expect
      .poll(async () => (await doc.send(new GetCommand({ TableName: tableName, Key: { pk: 'DEP#t', sk: 'SECRET#token' } }))).Item, { timeout: 5000 })
      .toBeUndefined();
  });
});
