import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

/**
 * The installed entry point, `bin/ctd.js`, as a user runs it: a separate Node process that
 * runs the prebuilt CLI (dist/ctd.js, from `npm ci`) or the TypeScript sources, finds the local engine through
 * engine.json, mints its token and exits with the documented codes without hanging.
 */

const BIN = fileURLToPath(new URL('../../bin/ctd.js', import.meta.url));

function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH, ...env }, timeout: 30_000 }, (error, out, err) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolve({ code, out, err });
    });
  });
}

let server: Server;
let url = '';
let home = '';
let gets = 0;

beforeAll(async () => {
  home = await mkdtemp(path.join(tmpdir(), 'ctd-bin-'));
  server = createServer((req, res) => {
    const json = (status: number, body: unknown) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    req.resume();
    req.on('end', () => {
      if (req.url === '/_admin/tokens') return json(201, { token: 'local-token-abc' });
      if (req.headers.authorization !== 'Bearer local-token-abc') return json(401, { message: 'Unauthorized' });
      if (req.url === '/deployments/d-9/history') {
        // Far more than a pipe holds: the reader's early close reaches ctd while it still writes.
        const events = Array.from({ length: 20_000 }, (_, i) => ({ id: i + 1, timestamp: '2025-01-01T00:00:00Z', type: 'TaskScheduled', stepId: 'hi' }));
        return json(200, { events, steps: [] });
      }
      if (req.method === 'POST') return json(202, { deploymentId: 'd-9', executionArn: 'arn', consoleUrl: 'http://console/d-9', status: 'PENDING' });
      const done = ++gets > 1;
      return json(200, {
        deploymentId: 'd-9',
        name: 'hello',
        status: done ? 'SUCCEEDED' : 'RUNNING',
        createdAt: '2025-01-01T00:00:00Z',
        updatedAt: '2025-01-01T00:00:02Z',
        ...(done ? { endedAt: '2025-01-01T00:00:02Z' } : {}),
        steps: [
          { stepId: 'hi', action: 'run', system: false, status: done ? 'succeeded' : 'running', attempt: 1, dependsOn: [], startedAt: '2025-01-01T00:00:00Z', ...(done ? { endedAt: '2025-01-01T00:00:02Z' } : {}) },
        ],
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await rm(home, { recursive: true, force: true });
});

function sh(command: string, env: NodeJS.ProcessEnv): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile('/bin/sh', ['-c', command], { env: { PATH: process.env.PATH, ...env }, timeout: 30_000 }, (error, out, err) => {
      resolve({ code: error ? (typeof error.code === 'number' ? error.code : -1) : 0, out, err });
    });
  });
}

describe('bin/ctd.js', () => {
  it('exits quietly when the reader of its output goes away (ctd history ID | head)', async () => {
    await writeFile(path.join(home, 'engine.json'), JSON.stringify({ apiUrl: url, cloudUrl: url, pid: process.pid }));
    // The status of ctd itself, not of head: a shell pipeline reports its last command.
    const r = await sh(`{ ${JSON.stringify(process.execPath)} ${BIN} history d-9; echo "ctd exit $?" >&2; } | head -1`, { CTD_HOME: home });
    expect(r.out.trim().split('\n')).toHaveLength(1);
    expect(r.err).not.toMatch(/EPIPE|at .*\(|Error/);
    expect(r.err).toContain('ctd exit 0');
  });

  it('prints help and exits 0', async () => {
    const r = await run(['--help'], { CTD_HOME: home });
    expect(r.code).toBe(0);
    expect(r.out).toContain('Usage: ctd');
    expect(r.out).toMatch(/local\s+the embedded engine/);
  });

  it('says the same from the prebuilt bundle as from the TypeScript sources', async () => {
    const { buildCli } = await import('../../scripts/build-cli.ts');
    await buildCli();
    const bundled = await run(['--help'], { CTD_HOME: home });
    const source = await run(['--help'], { CTD_HOME: home, CTD_CLI_FROM_SOURCE: '1' });
    expect(bundled.out).toContain('local');
    expect(bundled).toEqual(source);
  });

  it('exits 3 with the "no local engine" message when none runs', async () => {
    const r = await run(['ls'], { CTD_HOME: path.join(home, 'empty') });
    expect(r.code).toBe(3);
    expect(r.err).toContain('no local engine is running');
  });

  it('deploys with --wait against the engine named in engine.json and exits 0 on SUCCEEDED', async () => {
    await writeFile(path.join(home, 'engine.json'), JSON.stringify({ apiUrl: url, cloudUrl: url, pid: process.pid }));
    const file = path.join(home, 'd.yaml');
    await writeFile(file, 'name: hello\nworkflow: { steps: [{ id: hi, action: run, command: "true" }] }\n');
    const r = await run(['deploy', file, '--wait'], { CTD_HOME: home });
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/hi\s+run\s+running/);
    expect(r.out).toMatch(/hi\s+run\s+succeeded\s+2\.0s/);
    expect(r.out).toContain('SUCCEEDED in 2.0s');
    expect(r.out).not.toContain('local-token-abc');
  });
});
