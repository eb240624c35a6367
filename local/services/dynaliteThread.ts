import { createServer, type Server } from 'node:http';
import type { Worker } from 'node:worker_threads';
import type { TableCacheStats } from './dynaliteTableCache.ts';
import type { DynaliteWorkerData, DynaliteWorkerMessage, DynaliteWorkerRequest } from './dynaliteWorker.ts';
import { closeServer, listen } from './httpUtil.ts';
import { startTsWorker } from './tsWorker.ts';

/**
 * dynalite on a thread of its own (local/services/dynaliteWorker.ts), supervised: a thread that ends
 * unasked (an uncaught error, a terminate) is restarted on the same port and LevelDB, so the URL every
 * client and sandbox holds stays good. While no thread serves, a stand-in on that port answers every
 * request with a DynamoDB InternalServerError that names the local DynamoDB and why it is down, so a
 * caller gets a reason (after the SDK's retries) instead of ECONNREFUSED or a hang.
 */

export interface DynaliteThreadOptions {
  log?: (line: string) => void;
  /** Tests: each thread as it starts (the first and every restart), to watch or end it. */
  onWorker?: (worker: Worker) => void;
}

export interface DynaliteThread {
  url: string;
  stats(): Promise<TableCacheStats>;
  /** Ends the thread (dynalite closes its LevelDB first) and the stand-in; no restart after this. */
  close(): Promise<void>;
}

/** More unasked ends than this within RESTART_WINDOW_MS: the thread stays down (a crash loop helps no one). */
const MAX_RESTARTS = 3;
const RESTART_WINDOW_MS = 60_000;
/** The first line of a thread's error, bounded: enough to say what failed, too little to carry a request's items. */
const firstLine = (e: Error) => `${e.name}: ${e.message.split('\n')[0]!.slice(0, 160)}`;

export async function startDynaliteThread(data: DynaliteWorkerData, opts: DynaliteThreadOptions = {}): Promise<DynaliteThread> {
  const log = opts.log ?? (() => undefined);
  let thread = await startWorker(data, opts.onWorker);
  const url = thread.url;
  const port = Number(new URL(url).port);
  let closing = false;
  let standIn: Server | undefined;
  let down = '';
  let restarting: Promise<void> | undefined;
  const restarts: number[] = [];

  const watch = (worker: Worker) => {
    let failure: string | undefined;
    // Without a listener an 'error' of the thread would throw in the engine and end it.
    worker.on('error', (e) => (failure ??= firstLine(e)));
    worker.once('exit', (code) => {
      if (closing) return;
      const reason = failure ? `its thread failed (${failure})` : `its thread exited (code ${code})`;
      const now = Date.now();
      while (restarts.length > 0 && restarts[0]! < now - RESTART_WINDOW_MS) restarts.shift();
      const giveUp = restarts.length >= MAX_RESTARTS;
      down = giveUp ? `${reason}, ${MAX_RESTARTS + 1} times within a minute; restart the engine` : `${reason}; it is restarting`;
      log(`local DynamoDB (dynalite) on ${url}: ${down}`);
      restarts.push(now);
      restarting = (async () => {
        standIn = await startStandIn(data.host, port, () => `the local DynamoDB (dynalite) is down: ${down}`).catch((e: unknown) => {
          log(`local DynamoDB (dynalite): no stand-in on port ${port}: ${String(e)}`);
          return undefined;
        });
        if (giveUp) return;
        try {
          thread = await startWorker({ ...data, port }, opts.onWorker, async () => {
            if (standIn) await closeServer(standIn).catch(() => undefined);
            standIn = undefined;
          });
          if (closing) return void (await stopWorker(thread.worker));
          watch(thread.worker);
          log(`local DynamoDB (dynalite) on ${url}: restarted`);
        } catch (e) {
          down = `${reason}, and restarting it failed (${e instanceof Error ? firstLine(e) : String(e)}); restart the engine`;
          log(`local DynamoDB (dynalite) on ${url}: ${down}`);
          standIn = await startStandIn(data.host, port, () => `the local DynamoDB (dynalite) is down: ${down}`).catch(() => undefined);
        }
      })();
    });
  };
  watch(thread.worker);

  let closed: Promise<void> | undefined;
  return {
    url,
    stats: async () => {
      // An ended thread sends nothing more: say why instead of waiting.
      if (thread.worker.threadId < 0) throw new Error(`the local DynamoDB (dynalite) is down: ${down}`);
      const answer = next(thread.worker, 'stats');
      ask(thread.worker, { type: 'stats' });
      const { hits, misses } = await answer;
      return { hits, misses };
    },
    close: () =>
      (closed ??= (async () => {
        closing = true;
        await restarting;
        if (standIn) await closeServer(standIn).catch(() => undefined);
        await stopWorker(thread.worker);
      })()),
  };
}

const ask = (worker: Worker, m: DynaliteWorkerRequest) => worker.postMessage(m);

/** Asks the thread to close dynalite (its server, then its LevelDB), then ends it. A thread already gone is just gone. */
async function stopWorker(worker: Worker): Promise<void> {
  if (worker.threadId < 0) return; // exited already
  const closed = next(worker, 'closed');
  ask(worker, { type: 'close' });
  await closed.catch(() => undefined);
  await worker.terminate();
}

/** A thread with dynalite loaded; `beforeListen` frees its port (the stand-in) only then, so the gap is a listen, not a module load. */
async function startWorker(data: DynaliteWorkerData, onWorker: DynaliteThreadOptions['onWorker'], beforeListen?: () => Promise<void>): Promise<{ worker: Worker; url: string }> {
  const worker = await startTsWorker(new URL('./dynaliteWorker.ts', import.meta.url), data);
  onWorker?.(worker);
  try {
    await next(worker, 'loaded');
    await beforeListen?.();
    const listening = next(worker, 'listening');
    ask(worker, { type: 'listen' });
    return { worker, url: (await listening).url };
  } catch (err) {
    await worker.terminate();
    throw err;
  }
}

/** The thread's next message of this type; rejects, naming the local DynamoDB, if it fails or ends first. */
function next<T extends DynaliteWorkerMessage['type']>(worker: Worker, type: T): Promise<Extract<DynaliteWorkerMessage, { type: T }>> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: DynaliteWorkerMessage) => {
      if (m.type !== type) return;
      off();
      resolve(m as Extract<DynaliteWorkerMessage, { type: T }>);
    };
    const onError = (err: Error) => {
      off();
      reject(new Error(`local DynamoDB (dynalite) failed: ${firstLine(err)}`, { cause: err }));
    };
    const onExit = (code: number) => {
      off();
      reject(new Error(`local DynamoDB (dynalite) failed: its thread exited (code ${code})`));
    };
    const off = () => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.once('error', onError);
    worker.once('exit', onExit);
  });
}

/** DynamoDB's error shape (JSON 1.0): the SDK raises it as an InternalServerError with this message. */
async function startStandIn(host: string, port: number, message: () => string): Promise<Server> {
  const server = createServer((req, res) => {
    req.resume();
    const body = JSON.stringify({ __type: 'com.amazonaws.dynamodb.v20120810#InternalServerError', message: message() });
    res.writeHead(500, { 'content-type': 'application/x-amz-json-1.0', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
  await listen(server, port, host);
  return server;
}
