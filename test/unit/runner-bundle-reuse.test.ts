import { spawnSync } from 'node:child_process';
import { cp, mkdtemp, readdir, readFile, realpath, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { prepareRunner } from '../../local/sandbox/runnerBundle.ts';

/**
 * The runner's build is reused across engine starts while nothing it was built from changed
 * (local/sandbox/runnerBundle.ts). Real esbuild on a copy of the project's sources, so a test can edit one.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let root: string;
let cacheDir: string;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ctd-runner-reuse-root-'));
  cacheDir = await mkdtemp(join(tmpdir(), 'ctd-runner-reuse-cache-'));
  for (const part of ['adapters', 'core', 'sandbox', 'package.json', 'tsconfig.json']) await cp(join(ROOT, part), join(root, part), { recursive: true, preserveTimestamps: true });
  await symlink(await realpath(join(ROOT, 'node_modules')), join(root, 'node_modules'));
});

afterAll(async () => {
  await rm(root, { recursive: true, force: true });
  await rm(cacheDir, { recursive: true, force: true });
});

/** A runner's boot with no task: it loads its modules, prints its ready marker, reads EOF and exits 0. */
function boot(entry: string): { status: number | null; stdout: string } {
  const run = spawnSync(process.execPath, [entry], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CTD_TASK_FROM_STDIN: '1' }, input: '', encoding: 'utf8', timeout: 60_000 });
  return { status: run.status, stdout: run.stdout };
}

/** An edit made a while before the engine starts (a file touched during a build is, on purpose, not recorded). */
async function edit(file: string, from: string, to: string): Promise<void> {
  const path = join(root, file);
  const source = await readFile(path, 'utf8');
  expect(source).toContain(from);
  await writeFile(path, source.replace(from, to));
  const before = new Date(Date.now() - 60_000);
  await utimes(path, before, before);
}

const files = async (entry: string) => Promise.all(['runner.cjs', 'runner-bundle.cjs'].map(async (f) => stat(join(dirname(entry), f))));

describe('runner build reuse', () => {
  it('a second start with nothing changed builds nothing, and its runner works', async () => {
    const first = await prepareRunner({ root, cacheDir });
    expect(first.built).toBe(true);
    const before = await files(first.entry);
    const second = await prepareRunner({ root, cacheDir });
    expect(second).toEqual({ entry: first.entry, built: false });
    const after = await files(second.entry);
    expect(after.map((s) => [s.ino, s.mtimeMs])).toEqual(before.map((s) => [s.ino, s.mtimeMs]));
    const run = boot(second.entry);
    expect(run.stdout).toContain('ctd-runner-ready');
    expect(run.status).toBe(0);
  }, 180_000);

  it('a change to one input file rebuilds, and the new runner has it; the start after reuses that build', async () => {
    const old = await prepareRunner({ root, cacheDir });
    await edit('core/config/names.ts', "RUNNER_READY = 'ctd-runner-ready'", "RUNNER_READY = 'ctd-runner-ready-edited'");
    const rebuilt = await prepareRunner({ root, cacheDir });
    expect(rebuilt.built).toBe(true);
    expect(rebuilt.entry).not.toBe(old.entry);
    const run = boot(rebuilt.entry);
    expect(run.stdout).toContain('ctd-runner-ready-edited');
    expect(run.status).toBe(0);
    expect(await prepareRunner({ root, cacheDir })).toEqual({ entry: rebuilt.entry, built: false });
  }, 180_000);

  it('a file changed while it builds is not taken as built: the next start builds again', async () => {
    // An mtime after the build began: esbuild may have read the file before or after the change.
    await edit('core/config/names.ts', "'ctd-runner-ready-edited'", "'ctd-runner-ready-during'");
    const path = join(root, 'core', 'config', 'names.ts');
    const later = new Date(Date.now() + 60_000);
    await utimes(path, later, later);
    try {
      expect((await prepareRunner({ root, cacheDir })).built).toBe(true);
      expect((await prepareRunner({ root, cacheDir })).built).toBe(true);
    } finally {
      const before = new Date(Date.now() - 60_000);
      await utimes(path, before, before);
    }
    expect((await prepareRunner({ root, cacheDir })).built).toBe(true);
    expect((await prepareRunner({ root, cacheDir })).built).toBe(false);
  }, 240_000);

  it('two engines starting at once after a change both end with the same working runner, and leave no partial build', async () => {
    await edit('core/config/names.ts', "'ctd-runner-ready-during'", "'ctd-runner-ready-twice'");
    const [a, b] = await Promise.all([prepareRunner({ root, cacheDir }), prepareRunner({ root, cacheDir })]);
    expect(a.built && b.built).toBe(true);
    expect(a.entry).toBe(b.entry);
    const run = boot(a.entry);
    expect(run.stdout).toContain('ctd-runner-ready-twice');
    expect(run.status).toBe(0);
    expect((await readdir(cacheDir)).filter((f) => f.startsWith('building-') || f.endsWith('.tmp'))).toEqual([]);
    expect((await prepareRunner({ root, cacheDir })).built).toBe(false);
  }, 180_000);

  it('a build removed from the cache is built again', async () => {
    const last = await prepareRunner({ root, cacheDir });
    await rm(dirname(last.entry), { recursive: true, force: true });
    const again = await prepareRunner({ root, cacheDir });
    expect(again).toEqual({ entry: last.entry, built: true });
    expect(boot(again.entry).status).toBe(0);
  }, 180_000);
});
