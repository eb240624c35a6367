import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RUNNER_READY } from '../../core/config/names.ts';
import { buildCodeCache, bundleRunner } from '../../local/sandbox/runnerBundle.ts';
import { codeCacheFile } from '../../sandbox/codeCache.ts';

/**
 * The bundled runner (local/sandbox/runnerBundle.ts) with and without its V8 code cache: the cache
 * only saves compile time, so a missing, corrupt or unbuildable one must leave a runner that starts.
 */

let dir: string;
let entry: string;
let cacheFile: string;

beforeAll(async () => {
  const built = await bundleRunner();
  // A private copy: these tests break its cache, which sandboxes of other tests share.
  dir = await mkdtemp(join(tmpdir(), 'ctd-runner-cache-'));
  await cp(dirname(built), dir, { recursive: true });
  entry = join(dir, 'runner.cjs');
  cacheFile = codeCacheFile(join(dir, 'runner-bundle.cjs'));
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A warm runner's boot: it loads its modules, says it is ready, reads EOF (no task) and exits 0. */
function boot(): { status: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [entry], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CTD_TASK_FROM_STDIN: '1' }, input: '', encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** Whether V8 on this Node binary accepts the cache for the bundle (a rejected one is only compiled anew). */
function cacheAccepted(): boolean {
  const probe = `const fs = require('node:fs'); const { Script } = require('node:vm');
    const s = new Script('(function (exports, require, module, __filename, __dirname) { ' + fs.readFileSync(process.argv[1], 'utf8') + '\\n});', { filename: process.argv[1], cachedData: fs.readFileSync(process.argv[2]) });
    process.stdout.write(String(!s.cachedDataRejected));`;
  const run = spawnSync(process.execPath, ['-e', probe, join(dir, 'runner-bundle.cjs'), cacheFile], { encoding: 'utf8' });
  return run.stdout === 'true';
}

describe('runner code cache', () => {
  it('is built with the bundle, and V8 accepts it for this Node binary', async () => {
    expect(await readdir(dir)).toContain(cacheFile.slice(dir.length + 1));
    expect(cacheAccepted()).toBe(true);
    const run = boot();
    expect(run.stderr).toBe('');
    expect(run.stdout).toContain(RUNNER_READY);
    expect(run.status).toBe(0);
  });

  it('a corrupt cache is rejected and the runner still starts', async () => {
    await writeFile(cacheFile, Buffer.from('not a V8 code cache'));
    expect(cacheAccepted()).toBe(false);
    const run = boot();
    expect(run.stdout).toContain(RUNNER_READY);
    expect(run.status).toBe(0);
  });

  it('when building the cache fails the bundle is still usable, compiling at each start', async () => {
    await rm(cacheFile, { force: true });
    const logged: string[] = [];
    // A Node that cannot run: the build reports why and leaves no cache behind.
    expect(await buildCodeCache(entry, { node: join(dir, 'no-such-node'), log: (l) => logged.push(l) })).toBe(false);
    expect(logged).toEqual([expect.stringMatching(/runner code cache not built .*ENOENT/)]);
    expect((await readdir(dir)).filter((f) => f.endsWith('.v8cache'))).toEqual([]);
    const run = boot();
    expect(run.stdout).toContain(RUNNER_READY);
    expect(run.status).toBe(0);
  });

  it('a runner that fails while loading leaves no cache and says why', async () => {
    await rm(cacheFile, { force: true });
    const broken = await mkdtemp(join(tmpdir(), 'ctd-runner-broken-'));
    try {
      await cp(entry, join(broken, 'runner.cjs'));
      await writeFile(join(broken, 'runner-bundle.cjs'), "throw new Error('bundle broken on purpose');");
      const logged: string[] = [];
      expect(await buildCodeCache(join(broken, 'runner.cjs'), { log: (l) => logged.push(l) })).toBe(false);
      expect(logged.join('\n')).toContain('bundle broken on purpose');
      expect((await readdir(broken)).filter((f) => f.endsWith('.v8cache'))).toEqual([]);
    } finally {
      await rm(broken, { recursive: true, force: true });
    }
    // Rebuilt on request, the cache is accepted again.
    expect(await buildCodeCache(entry)).toBe(true);
    expect(cacheAccepted()).toBe(true);
  });

  it('a warm runner with a bad setting waits for its task, then fails it naming the variable', () => {
    // It builds its clients before its task arrives; dying then would leave that task without a STOPPED event.
    const task = JSON.stringify({ CTD_DEPLOYMENT_ID: 'd-1', CTD_STEP_ID: 'a', CTD_TASK_TOKEN: 'tt', CTD_TASK_ARN: 'task/1' });
    const run = spawnSync(process.execPath, [entry], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CTD_TASK_FROM_STDIN: '1', AWS_REGION: 'eu-west-1', CTD_KMS_KEY_ID: 'k', CTD_CLOUD: 'openstack', CTD_KEYSTONE_URL: 'http://127.0.0.1:9/v3' },
      input: `${task}\n`,
      encoding: 'utf8',
      timeout: 60_000,
    });
    expect(run.stdout).toContain(RUNNER_READY);
    expect(run.stderr).toMatch(/runner failed.*the sandbox is invalid: CTD_TABLE_NAME: required/);
    expect(run.stderr).not.toContain('"tt"');
    expect(run.status).toBe(2);
  });
});
