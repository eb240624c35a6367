import { createServer, type Server } from 'node:http';
import type { LocalStepFunctions } from './sfn/index.ts';

/**
 * The local stand-in for the Step Functions console: one read-only page per execution with
 * its status and event history, so the console URL the API returns opens something locally too.
 * Loopback only; local mode is single-user.
 */
export async function startLocalConsole(sfn: LocalStepFunctions, port = 0): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const match = /^\/executions\/(.+)$/.exec(new URL(req.url ?? '/', 'http://x').pathname);
    if (req.method !== 'GET' || !match) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    try {
      const arn = decodeURIComponent(match[1]!);
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(page(sfn, arn));
    } catch {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('execution not found\n');
    }
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const address = server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : port}`;
  return { url, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

function page(sfn: LocalStepFunctions, arn: string): string {
  const execution = sfn.describeExecution(arn);
  const events = sfn.getExecutionHistory(arn);
  const rows = events
    .map((e) => {
      const details = Object.entries(e).find(([k]) => k.endsWith('EventDetails'))?.[1] as Record<string, unknown> | undefined;
      const name = typeof details?.name === 'string' ? details.name : '';
      const error = typeof details?.error === 'string' ? `${details.error}: ${String(details.cause ?? '')}` : '';
      return `<tr><td>${e.id}</td><td>${esc(new Date(e.timestamp ?? 0).toISOString())}</td><td>${esc(e.type ?? '')}</td><td>${esc(name)}</td><td>${esc(error)}</td></tr>`;
    })
    .join('\n');
  const refresh = execution.status === 'RUNNING' ? '<meta http-equiv="refresh" content="2">' : '';
  return `<!doctype html><html><head><meta charset="utf-8">${refresh}<title>${esc(execution.name)}</title>
<style>body{font:14px system-ui;margin:2em}td,th{padding:2px 8px;text-align:left;vertical-align:top}tr:nth-child(even){background:#f4f4f4}</style></head>
<body><h1>${esc(execution.name)} — ${esc(execution.status)}</h1>
<p>${esc(arn)}<br>started ${esc(execution.startDate.toISOString())}${execution.stopDate ? ` · stopped ${esc(execution.stopDate.toISOString())}` : ''}</p>
<table><tr><th>id</th><th>time</th><th>event</th><th>state</th><th>error</th></tr>${rows}</table></body></html>`;
}

function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
