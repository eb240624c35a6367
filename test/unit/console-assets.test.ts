import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveConsole } from '../../local/console.ts';
import { buildConsoleAssets, CONSOLE_DIST } from '../../scripts/build-console.ts';

describe('Console assets', () => {
  it('are committed exactly as a fresh build makes them (run npm run build:console after changing console/)', async () => {
    const fresh = await buildConsoleAssets();
    for (const [name, text] of Object.entries(fresh)) {
      expect(await readFile(join(CONSOLE_DIST, name), 'utf8'), `console/dist/${name} is stale`).toBe(text);
    }
  });

  it('reference nothing outside their own origin (no CDN, no web fonts)', async () => {
    const fresh = await buildConsoleAssets();
    expect(fresh['index.html']).not.toMatch(/(src|href)="(https?:)?\/\//);
    expect(fresh['console.css']).not.toMatch(/@import|url\(\s*['"]?(https?:)?\/\//);
    expect(fresh['console.js']).not.toMatch(/fonts\.googleapis|unpkg\.com|jsdelivr|cdnjs/);
  });
});

describe('Function: serveConsole', () => {
  let server: Server;
  let base: string;
  let dist: string;
  beforeAll(async () => {
    dist = `${await mkdtemp(join(tmpdir(), 'ctd-console-'))}/`;
    await writeFile(`${dist}index.html`, '<!doctype html><p>console</p>');
    server = createServer((req, res) => {
      void serveConsole(req, res, dist).then((handled) => {
        if (!handled) res.writeHead(418).end('api');
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const address = server.address();
    base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await rm(dist, { recursive: true, force: true });
  });

  it('serves the page with a policy that forbids other origins for scripts and styles', async () => {
    const res = await fetch(`${base}/console/`);
    expect(res.status).toBe(200);
    expect(await res.text()).toContain('console');
    expect(res.headers.get('content-security-policy')).toContain("script-src 'self'");
  });

  it("sends the API's execution console URL to the deployment's page", async () => {
    const arn = 'arn:aws:states:us-east-1:000000000000:execution:ctd-deployment:d-abc';
    const res = await fetch(`${base}/console/executions/${arn}`, { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe('/console/#/deployments/d-abc');
  });

  it('leaves every other path to the API, and knows no other file', async () => {
    expect((await fetch(`${base}/deployments`)).status).toBe(418);
    expect((await fetch(`${base}/console/../../etc/passwd`)).status).not.toBe(200);
    expect((await fetch(`${base}/console/secret.txt`)).status).toBe(404);
  });
});
