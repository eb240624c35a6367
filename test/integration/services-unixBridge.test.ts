import { createServer } from 'node:http';
import { request } from 'node:http';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { bridgeToUnixSocket } from '../../local/services/unixBridge.ts';
import { closeServer, listen } from '../../local/services/httpUtil.ts';

function getOverSocket(socketPath: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, headers: { host: 'engine' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('Function: bridgeToUnixSocket', () => {
  let dir: string;
  const service = createServer((req, res) => res.end(`hello ${req.url}`));
  let url: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ctd-bridge-'));
    url = await listen(service, 0, '127.0.0.1');
  });

  afterEach(async () => {
    await closeServer(service);
    await rm(dir, { recursive: true, force: true });
  });

  it('carries an HTTP GET through the socket to the TCP service', async () => {
    const socketPath = join(dir, 'engine.sock');
    const bridge = await bridgeToUnixSocket(url, socketPath);
    expect((await stat(socketPath)).mode & 0o777).toBe(0o600);

    expect(await getOverSocket(socketPath, '/ping')).toEqual({ status: 200, body: 'hello /ping' });
    expect(await getOverSocket(socketPath, '/again')).toEqual({ status: 200, body: 'hello /again' });

    await bridge.close();
    await expect(stat(socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
