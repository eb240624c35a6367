import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  CreateTableCommand,
  DeleteItemCommand,
  DescribeTableCommand,
  DynamoDBClient,
  ResourceNotFoundException,
  ScanCommand,
  type AttributeValue,
} from '@aws-sdk/client-dynamodb';
import { TABLE, createTableInput } from '../../adapters/aws/table.ts';
import type { TableCacheStats } from './dynaliteTableCache.ts';
import { startDynaliteThread, type DynaliteThreadOptions } from './dynaliteThread.ts';
import { keepOwnerOnly } from './ownerOnly.ts';

export interface LocalDynamoDb {
  url: string;
  /**
   * Deletes items whose TTL attribute is in the past, as DynamoDB's TTL would (eventually);
   * returns how many were deleted. Runs on a timer too; exposed so tests need not wait.
   */
  sweepExpired(): Promise<number>;
  /** How often dynalite's table description came from memory rather than LevelDB (local/services/dynaliteTableCache.ts). */
  tableCacheStats(): Promise<TableCacheStats>;
  close(): Promise<void>;
}

export interface LocalDynamoDbOptions extends DynaliteThreadOptions {
  stateDir: string;
  tableName: string;
  port?: number;
  host?: string;
  /** How often the TTL sweeper runs; 0 disables the timer (sweepExpired still works). Default 60 s. */
  sweepIntervalSeconds?: number;
  /** Epoch milliseconds; injected so tests can move time instead of sleeping. */
  now?: () => number;
}

/** Builds a client for the local endpoint; dynalite ignores the signature but the SDK needs one. */
export function localDynamoDbClient(url: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint: url,
    region: 'us-east-1',
    credentials: { accessKeyId: 'local', secretAccessKey: 'local' },
  });
}

async function ensureTable(client: DynamoDBClient, tableName: string): Promise<void> {
  try {
    await client.send(new DescribeTableCommand({ TableName: tableName }));
    return;
  } catch (err) {
    if (!(err instanceof ResourceNotFoundException)) throw err;
  }
  await client.send(new CreateTableCommand(createTableInput(tableName)));
  // Even with createTableMs 0 the table passes through CREATING on a timer tick.
  for (let attempt = 0; attempt < 100; attempt++) {
    const { Table } = await client.send(new DescribeTableCommand({ TableName: tableName }));
    if (Table?.TableStatus === 'ACTIVE') return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`table ${tableName} did not become ACTIVE`);
}

async function sweep(client: DynamoDBClient, tableName: string, nowSeconds: number): Promise<number> {
  const names = { '#ttl': TABLE.ttlAttribute };
  // A Number comparison only matches Number attributes, which is also DynamoDB's TTL rule.
  const values = { ':now': { N: String(nowSeconds) } };
  let deleted = 0;
  let startKey: Record<string, AttributeValue> | undefined;
  do {
    const page = await client.send(
      new ScanCommand({
        TableName: tableName,
        FilterExpression: '#ttl < :now',
        ProjectionExpression: '#pk, #sk',
        ExpressionAttributeNames: { ...names, '#pk': TABLE.partitionKey, '#sk': TABLE.sortKey },
        ExpressionAttributeValues: values,
        ExclusiveStartKey: startKey,
      }),
    );
    for (const key of page.Items ?? []) {
      try {
        // Re-checked at delete time so an item whose expiry was just extended survives.
        await client.send(
          new DeleteItemCommand({ TableName: tableName, Key: key, ConditionExpression: '#ttl < :now', ExpressionAttributeNames: names, ExpressionAttributeValues: values }),
        );
        deleted++;
      } catch (err) {
        if ((err as Error).name !== 'ConditionalCheckFailedException') throw err;
      }
    }
    startKey = page.LastEvaluatedKey;
  } while (startKey);
  return deleted;
}

/**
 * DynamoDB for the embedded engine: dynalite over LevelDB under `<stateDir>/dynamodb`, with the
 * one table from {@link createTableInput}. dynalite has no TTL, so a sweeper deletes expired
 * items; production relies on TTL only as the last resort, and so does this.
 */
export async function startLocalDynamoDb(opts: LocalDynamoDbOptions): Promise<LocalDynamoDb> {
  const dataDir = join(opts.stateDir, 'dynamodb');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  // LevelDB keeps deleted items in its log: its files must not be readable by other users.
  const modes = await keepOwnerOnly(dataDir);
  const dynalite = await startDynaliteThread(
    { path: dataDir, host: opts.host ?? '127.0.0.1', port: opts.port ?? 0 },
    { ...(opts.log ? { log: opts.log } : {}), ...(opts.onWorker ? { onWorker: opts.onWorker } : {}) },
  ).catch(async (err: unknown) => {
    await modes.close();
    throw err;
  });
  const url = dynalite.url;
  const client = localDynamoDbClient(url);
  try {
    await ensureTable(client, opts.tableName);
  } catch (err) {
    client.destroy();
    await dynalite.close();
    await modes.close();
    throw err;
  }

  const now = opts.now ?? Date.now;
  let running: Promise<number> | undefined;
  const sweepExpired = (): Promise<number> => {
    // One sweep at a time: overlapping scans would race to delete the same items.
    running ??= sweep(client, opts.tableName, Math.floor(now() / 1000)).finally(() => {
      running = undefined;
    });
    return running;
  };
  const intervalSeconds = opts.sweepIntervalSeconds ?? 60;
  const timer =
    intervalSeconds > 0
      ? setInterval(() => {
          // A failed sweep is retried on the next tick; TTL is best-effort on AWS too.
          sweepExpired().catch(() => undefined);
        }, intervalSeconds * 1000)
      : undefined;
  timer?.unref();

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    if (timer) clearInterval(timer);
    await running?.catch(() => undefined);
    client.destroy();
    await dynalite.close();
    await modes.close();
  };
  return { url, sweepExpired, tableCacheStats: dynalite.stats, close: () => (closing ??= close()) };
}
