import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';

/**
 * Serves the web console (console/dist, built by scripts/build-console.ts) under /console/ on the
 * API's own origin, so its URL is as stable as the API's port and the page calls the API without
 * CORS. The page itself only talks to the public HTTP API with the user's token.
 */

export const CONSOLE_PREFIX = '/console';
const DIST = fileURLToPath(new URL('../console/dist/', import.meta.url));
const FILES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'console.js': 'text/javascript; charset=utf-8',
  'console.css': 'text/css; charset=utf-8',
};
const HEADERS = {
  // Everything comes from here; the API may be elsewhere when the user signs in to another endpoint.
  'content-security-policy': "default-src 'self'; connect-src 'self' http: https:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-cache',
};

/** Handles a request under /console; answers false for any other path so the API routes it. */
export async function serveConsole(req: IncomingMessage, res: ServerResponse, dist = DIST): Promise<boolean> {
  const path = new URL(req.url ?? '/', 'http://x').pathname;
  if (path !== CONSOLE_PREFIX && !path.startsWith(`${CONSOLE_PREFIX}/`)) return false;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD' }).end();
    return true;
  }
  const rest = path.slice(CONSOLE_PREFIX.length).replace(/^\//, '');
  // The console URL the API returns for an execution (…/console/executions/<arn>): its deployment page.
  const execution = /^executions\/(.+)$/.exec(rest);
  if (path === CONSOLE_PREFIX || execution) {
    const name = execution ? decodeURIComponent(execution[1] ?? '').split(':').pop() ?? '' : '';
    res.writeHead(302, { location: `${CONSOLE_PREFIX}/${name ? `#/deployments/${encodeURIComponent(name)}` : ''}` }).end();
    return true;
  }
  const file = rest === '' ? 'index.html' : rest;
  const type = FILES[file];
  if (!type) {
    res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    return true;
  }
  try {
    const body = await readFile(`${dist}${file}`);
    res.writeHead(200, { 'content-type': type, 'content-length': body.length, ...HEADERS });
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch {
    res.writeHead(500, { 'content-type': 'text/plain' }).end('the console is not built: run npm run build:console\n');
  }
  return true;
}
