import { watch } from 'node:fs';
import { mkdtemp, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { keepOwnerOnly } from '../../local/services/ownerOnly.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function modeOf(path: string): Promise<number> {
  return (await stat(path)).mode & 0o777;
}

async function until(check: () => Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('keepOwnerOnly', () => {
  it('tightens files already there and files that appear (created or renamed in) to 0600', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ctd-owner-only-'));
    dirs.push(dir);
    await writeFile(join(dir, 'before'), 'x', { mode: 0o644 });
    const guard = await keepOwnerOnly(dir);
    try {
      expect(await modeOf(dir)).toBe(0o700);
      expect(await modeOf(join(dir, 'before'))).toBe(0o600);
      await writeFile(join(dir, 'created'), 'x', { mode: 0o644 });
      await until(async () => (await modeOf(join(dir, 'created'))) === 0o600, 'the new file to be 0600');
      // LevelDB writes CURRENT as a temp file renamed over the old one.
      const outside = await mkdtemp(join(tmpdir(), 'ctd-owner-only-src-'));
      dirs.push(outside);
      await writeFile(join(outside, 'CURRENT'), 'x', { mode: 0o644 });
      await rename(join(outside, 'CURRENT'), join(dir, 'CURRENT'));
      await until(async () => (await modeOf(join(dir, 'CURRENT'))) === 0o600, 'the renamed-in file to be 0600');
    } finally {
      await guard.close();
    }
  });

  it('leaves the directory quiet once a new file is tightened (its own chmod does not trigger another)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'ctd-owner-only-'));
    dirs.push(dir);
    const guard = await keepOwnerOnly(dir);
    try {
      await writeFile(join(dir, 'LOG'), 'x', { mode: 0o644 });
      await until(async () => (await modeOf(join(dir, 'LOG'))) === 0o600, 'the file to be 0600');
      // A second watcher sees every attribute change from here on. Chmod-ing on 'change' events
      // used to answer its own chmod forever: thousands of events a second, a core's worth of CPU.
      let changes = 0;
      const observer = watch(dir, () => changes++);
      await new Promise((resolve) => setTimeout(resolve, 300));
      observer.close();
      // At most the tail of the one chmod above, delivered after the mode was read.
      expect(changes).toBeLessThanOrEqual(1);
    } finally {
      await guard.close();
    }
  });
});
