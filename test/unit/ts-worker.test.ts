import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Worker } from 'node:worker_threads';
import { afterEach, describe, expect, it } from 'vitest';
import { startTsWorker, workerBundle } from '../../local/services/tsWorker.ts';

/**
 * A worker thread of the engine (dynalite's) runs its TypeScript module as one plain-JS bundle built
 * once per content, not through tsx (which cost each engine start ~0.3 s of CPU). What must hold: the
 * thread runs the module with its data, an unchanged tree reuses the bundle, and an edit to any
 * imported file makes a new one (never stale code).
 */

let dir: string | undefined;
afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function project(depAnswer: string) {
  const root = (dir ??= await mkdtemp(join(tmpdir(), 'ctd-tsworker-')));
  await writeFile(
    join(root, 'entry.ts'),
    [
      "import { parentPort, workerData } from 'node:worker_threads';",
      "import { answer, type Answer } from './dep.ts';",
      "import './side.ts';",
      'interface Data { name: string }',
      'const data = (workerData as { data: Data }).data;',
      'const reply: Answer = answer(data.name);',
      'parentPort!.postMessage(reply);',
    ].join('\n'),
  );
  await writeFile(join(root, 'side.ts'), `(globalThis as { side?: string }).side = '${depAnswer}';\n`);
  await writeFile(join(root, 'dep.ts'), `export type Answer = string;\nexport const answer = (name: string): Answer => \`${depAnswer} \${name}\`;\n`);
  return { entry: pathToFileURL(join(root, 'entry.ts')), cacheDir: join(root, 'cache') };
}

const firstMessage = (worker: Worker) =>
  new Promise<unknown>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  }).finally(() => void worker.terminate());

describe('Function: startTsWorker', () => {
  it('runs the module and what it imports from a plain-JS bundle, with the data it was given', async () => {
    const { entry, cacheDir } = await project('hello');
    expect(await firstMessage(await startTsWorker(entry, { name: 'thread' }, { cacheDir }))).toBe('hello thread');
    const [bundle, ...more] = await readdir(cacheDir);
    expect(more).toEqual([]);
    expect(bundle).toMatch(/^entry-[0-9a-f]{16}\.mjs$/);
    const text = await readFile(join(cacheDir, bundle!), 'utf8');
    // Types are gone and dep.ts is inlined: Node runs it without a loader.
    expect(text).not.toMatch(/interface Data|: Answer|from '\.\/dep\.ts'/);
    expect(text).toContain('hello');
  });

  it('reuses the bundle while nothing changed, and builds a new one when an imported file changes', async () => {
    const { entry, cacheDir } = await project('hello');
    const first = await workerBundle(entry, cacheDir);
    const builtAt = (await stat(first)).mtimeMs;
    expect((await workerBundle(entry, cacheDir)).href).toBe(first.href);
    expect((await stat(first)).mtimeMs).toBe(builtAt);

    // A file imported only for its side effects counts too.
    await writeFile(join(dir!, 'side.ts'), "(globalThis as { side?: string }).side = 'edited';\n");
    const sideEdited = await workerBundle(entry, cacheDir);
    expect(sideEdited.href).not.toBe(first.href);
    expect(await readFile(sideEdited, 'utf8')).toContain('edited');

    await project('goodbye');
    const second = await workerBundle(entry, cacheDir);
    expect(second.href).not.toBe(first.href);
    expect(await firstMessage(await startTsWorker(entry, { name: 'thread' }, { cacheDir }))).toBe('goodbye thread');
  });
});
