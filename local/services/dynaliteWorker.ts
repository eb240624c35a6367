import { parentPort, workerData } from 'node:worker_threads';
import { dynaliteWithTableCache } from './dynaliteTableCache.ts';
import { closeServer, listen } from './httpUtil.ts';

/**
 * dynalite in a worker thread of the engine (started by local/services/dynamodb.ts): the table's
 * HTTP server, its LevelDB reads and writes and their JSON run on an event loop of their own, so
 * the engine's requests (Step Functions, the Lambdas, the API, the sandboxes' heartbeats) do not
 * queue behind them, and on a second core they run side by side.
 */

export interface DynaliteWorkerData {
  path: string;
  host: string;
  port: number;
}

export type DynaliteWorkerRequest = { type: 'stats' } | { type: 'close' };
export type DynaliteWorkerMessage =
  | { type: 'listening'; url: string }
  | { type: 'stats'; hits: number; misses: number }
  | { type: 'closed' };

const port = parentPort;
if (!port) throw new Error('dynaliteWorker.ts runs as a worker thread (see local/services/dynamodb.ts)');
const { path, host, port: tcpPort } = (workerData as { data: DynaliteWorkerData }).data;
const { server, stats } = dynaliteWithTableCache({ path, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
const send = (m: DynaliteWorkerMessage) => port.postMessage(m);
port.on('message', (m: DynaliteWorkerRequest) => {
  if (m.type === 'stats') send({ type: 'stats', ...stats });
  // After the last response: the engine's clients are gone by then. The thread then ends by itself.
  if (m.type === 'close') void closeServer(server).then(() => {
    send({ type: 'closed' });
    port.close();
  });
});
send({ type: 'listening', url: await listen(server, tcpPort, host) });
