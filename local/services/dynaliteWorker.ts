import { parentPort, workerData } from 'node:worker_threads';
import { dynaliteWithTableCache } from './dynaliteTableCache.ts';
import { closeServer, listen } from './httpUtil.ts';
import { ignoreClientAborts } from './dynaliteAborts.ts';

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

export type DynaliteWorkerRequest = { type: 'listen' } | { type: 'stats' } | { type: 'close' };
export type DynaliteWorkerMessage =
  | { type: 'loaded' }
  | { type: 'listening'; url: string }
  | { type: 'stats'; hits: number; misses: number }
  | { type: 'closed' };

const port = parentPort;
if (!port) throw new Error('dynaliteWorker.ts runs as a worker thread (see local/services/dynamodb.ts)');
const { path, host, port: tcpPort } = (workerData as { data: DynaliteWorkerData }).data;
const { server, stats } = dynaliteWithTableCache({ path, createTableMs: 0, deleteTableMs: 0, updateTableMs: 0 });
const send = (m: DynaliteWorkerMessage) => port.postMessage(m);
ignoreClientAborts(server);
port.on('message', (m: DynaliteWorkerRequest) => {
  // Loaded first, listening when told: a restarted thread takes its port over from the stand-in (dynaliteThread.ts).
  if (m.type === 'listen') void listen(server, tcpPort, host).then((url) => send({ type: 'listening', url }));
  if (m.type === 'stats') send({ type: 'stats', ...stats });
  // After the last response: the engine's clients are gone by then. The thread then ends by itself.
  if (m.type === 'close') void closeServer(server).then(() => {
    send({ type: 'closed' });
    port.close();
  });
});
send({ type: 'loaded' });
