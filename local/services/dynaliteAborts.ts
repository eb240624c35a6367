import type { IncomingMessage, Server, ServerResponse } from 'node:http';

/**
 * dynalite rethrows a request's 'error' (`req.on('error', (err) => { throw err })`), which a client
 * that goes away mid-body raises ("aborted", ECONNRESET): a sandbox killed while it writes, say. The
 * throw ended dynalite's whole thread and every other client's requests with it. That client is gone,
 * so nothing is left to answer: its request is dropped and the server goes on.
 */
export function ignoreClientAborts(server: Server): void {
  const handlers = server.listeners('request') as ((req: IncomingMessage, res: ServerResponse) => void)[];
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    for (const handle of handlers) handle(req, res);
    // dynalite's listener is added synchronously by its handler, above; nothing else listens for it.
    req.removeAllListeners('error');
    req.on('error', () => res.destroy());
  });
}
