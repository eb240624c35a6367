import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { GetItemCommand, PutItemCommand, type DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { afterEach, describe, expect, it } from 'vitest';
import { startLocalEngine } from '../../local/engine.ts';
import { localDynamoDbClient, startLocalDynamoDb, type LocalDynamoDb } from '../../local/services/dynamodb.ts';

/**
 * The local DynamoDB runs dynalite on a worker thread of the engine (local/services/dynaliteThread.ts).
 * What a user of the engine would notice when that thread ends: the engine's stop leaves no thread and
 * frees the LevelDB for the next engine; a thread that dies mid-request is restarted on the same URL,
 * callers meanwhile get an error naming the local DynamoDB (never a hang, never a secret); a client
 * that hangs up mid-request does not take the thread down for everyone else.
 */

const TABLE = 'ctd-worker-test';
const SECRET = 'tok-3f9c1d7e-do-not-log';

let dirs: string[] = [];
let dbs: LocalDynamoDb[] = [];
let clients: DynamoDBClient[] = [];
afterEach(async () => {
  for (const c of clients) c.destroy();
  await Promise.all(dbs.map((d) => d.close()));
  await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  dirs = [];
  dbs = [];
  clients = [];
});

const newDir = async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ctd-dynalite-worker-'));
  dirs.push(dir);
  return dir;
};

async function start(stateDir: string) {
  const workers: Worker[] = [];
  const logs: string[] = [];
  const db = await startLocalDynamoDb({ stateDir, tableName: TABLE, sweepIntervalSeconds: 0, onWorker: (w) => void workers.push(w), log: (l) => void logs.push(l) });
  dbs.push(db);
  const client = localDynamoDbClient(db.url);
  clients.push(client);
  return { db, client, workers, logs };
}

const put = (client: DynamoDBClient, pk: string, note = 'x') => client.send(new PutItemCommand({ TableName: TABLE, Item: { pk: { S: pk }, sk: { S: 'META' }, note: { S: note } } }));
const get = async (client: DynamoDBClient, pk: string) => (await client.send(new GetItemCommand({ TableName: TABLE, Key: { pk: { S: pk }, sk: { S: 'META' } } }))).Item?.note?.S;

/** A PutItem whose body is only half sent: in flight until the socket ends. Resolves with how the socket ended. */
function halfSentPut(url: string, opened: () => void): Promise<'closed'> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(
        `POST / HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\nContent-Length: 4000\r\n\r\n` +
          `{"TableName":"${TABLE}","Item":{"pk":{"S":"half"},"sk":{"S":"META"},"token":{"S":"${SECRET}`,
      );
      opened();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => resolve('closed'));
    setTimeout(() => reject(new Error('the in-flight request neither ended nor got an answer in 20 s')), 20_000).unref();
  });
}

/** Waits for the next thread to be up (a restart), by the hook's count. */
async function nextWorker(workers: Worker[], count: number, client: DynamoDBClient): Promise<void> {
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
    if (workers.length >= count && (await get(client, 'probe').then(() => true, () => false))) return;
  }
  throw new Error(`no thread #${count} answering in 30 s`);
}

/** The threads of this process, as the kernel lists them. */
const threadCount = () => readdirSync('/proc/self/task').length;

describe('Local DynamoDB: dynalite on a worker thread', () => {
  it('ends with the engine: no thread left, and the LevelDB lock is free for another process and a new engine', { timeout: 120_000 }, async () => {
    const stateDir = await newDir();
    const opts = { stateDir, apiPort: 0, log: () => undefined };
    // A first start and stop creates what stays for the process's life (libuv's pool, the SDK's agents).
    await (await startLocalEngine(opts)).stop();
    const before = threadCount();
    const engine = await startLocalEngine(opts);
    const running = threadCount();
    await engine.stop();
    // At least dynalite's thread was there while the engine ran, and none of the engine's is left.
    expect(running).toBeGreaterThan(before);
    for (let i = 0; i < 40 && threadCount() > before; i++) await new Promise((r) => setTimeout(r, 50));
    expect(threadCount()).toBe(before);

    // Another process takes the LevelDB (its LOCK is an fcntl lock: held by this process, it would fail)...
    const open = spawnSync(
      process.execPath,
      ['-e', `const { ClassicLevel } = require('classic-level'); const db = new ClassicLevel(process.argv[1]); db.open().then(() => db.close()).then(() => console.log('opened'), (e) => { console.error(e.cause?.message ?? e.message); process.exit(1); });`, join(stateDir, 'dynamodb')],
      { cwd: process.cwd(), encoding: 'utf8', timeout: 30_000 },
    );
    expect(open.stdout + open.stderr).toContain('opened');
    // ...and so does a new engine in this process.
    const again = await startLocalEngine(opts);
    await again.stop();
  });

  it('a closed local DynamoDB has ended its thread, and a new one on the same dir reads what it wrote', async () => {
    const stateDir = await newDir();
    const first = await start(stateDir);
    await put(first.client, 'kept', 'survives');
    const exited = new Promise<number>((resolve) => first.workers[0]!.once('exit', resolve));
    await first.db.close();
    await exited;
    expect(first.workers[0]!.threadId).toBe(-1);

    const second = await start(stateDir);
    expect(await get(second.client, 'kept')).toBe('survives');
  });

  it('a request in flight when the thread dies ends at once; callers then get an answer or an error naming the local DynamoDB, and the thread comes back on the same URL', { timeout: 60_000 }, async () => {
    const { db, client, workers, logs } = await start(await newDir());
    await put(client, 'probe', 'before');
    let opened!: () => void;
    const isOpen = new Promise<void>((r) => (opened = r));
    const inFlight = halfSentPut(db.url, opened);
    await isOpen;
    await workers[0]!.terminate();
    expect(await inFlight).toBe('closed');

    // During the restart: the stand-in's error (after the SDK's retries) or the new thread's answer, never a refused connection.
    const during = await get(client, 'probe').then(
      (note) => `answer ${note}`,
      (e: Error) => `error ${e.name}: ${e.message}`,
    );
    expect(during).toMatch(/^answer before$|^error InternalServerError: the local DynamoDB \(dynalite\) is down: its thread exited \(code 1\); it is restarting$/);

    await nextWorker(workers, 2, client);
    expect(await get(client, 'probe')).toBe('before');
    await put(client, 'after', 'restarted');
    expect(await get(client, 'after')).toBe('restarted');
    expect(logs.join('\n')).toMatch(/local DynamoDB \(dynalite\) on http:\/\/127\.0\.0\.1:\d+: its thread exited \(code 1\); it is restarting/);
    expect(logs.join('\n')).toContain('restarted');
    expect(logs.join('\n')).not.toContain(SECRET);
  });

  it('a thread that keeps dying stays down: callers get an error that names the local DynamoDB and says what to do, no secret; close still ends', { timeout: 90_000 }, async () => {
    const { db, client, workers, logs } = await start(await newDir());
    await put(client, 'probe');
    for (let n = 1; n <= 4; n++) {
      let opened!: () => void;
      const isOpen = new Promise<void>((r) => (opened = r));
      const inFlight = halfSentPut(db.url, opened);
      await isOpen;
      await workers[n - 1]!.terminate();
      await inFlight;
      if (n < 4) await nextWorker(workers, n + 1, client);
    }
    let error: Error | undefined;
    for (let i = 0; i < 100 && !error; i++) {
      error = await get(client, 'probe').then(() => undefined, (e: Error) => e);
      if (!error) await new Promise((r) => setTimeout(r, 50));
    }
    expect(error?.name).toBe('InternalServerError');
    expect(error?.message).toBe('the local DynamoDB (dynalite) is down: its thread exited (code 1), 4 times within a minute; restart the engine');
    expect(workers).toHaveLength(4);
    expect(`${error?.message} ${logs.join('\n')}`).not.toContain(SECRET);
    // The engine's own questions to the thread get the same reason, not a wait for an answer that never comes.
    await expect(db.tableCacheStats()).rejects.toThrow('the local DynamoDB (dynalite) is down: its thread exited (code 1), 4 times within a minute; restart the engine');
    await db.close();
  });

  it('a client that hangs up mid-request does not end the thread: the others go on being served', async () => {
    const { db, client, workers, logs } = await start(await newDir());
    await put(client, 'probe', 'before');
    const { hostname, port } = new URL(db.url);
    await new Promise<void>((resolve) => {
      const socket = connect(Number(port), hostname, () => {
        socket.write(`POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: DynamoDB_20120810.PutItem\r\nContent-Length: 4000\r\n\r\n{"TableName":"${TABLE}","Item":{"token":{"S":"${SECRET}`);
        setTimeout(() => socket.destroy(), 100);
      });
      socket.on('close', () => resolve());
    });
    // Long enough for the thread's 'aborted' to have been thrown, if it were.
    await new Promise((r) => setTimeout(r, 300));
    expect(await get(client, 'probe')).toBe('before');
    expect(workers).toHaveLength(1);
    expect(workers[0]!.threadId).toBeGreaterThan(0);
    expect(logs).toEqual([]);
  });
});
