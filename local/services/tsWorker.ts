import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * A worker thread running a TypeScript module of this project. The engine itself runs under tsx
 * (the CLI, the demo) or vitest, whose loaders a worker does not inherit in both cases. The module
 * and the project files it imports are bundled into one plain-JS file (packages stay in
 * node_modules), built once per content and cached: loading tsx in the thread cost each engine start
 * ~0.3 s of CPU (docs/ARCHITECTURE.md, "Local DynamoDB"). If that build fails, the thread loads the
 * module through tsx's scoped `tsImport` as before. The thread reads its data as `workerData.data`.
 */
export async function startTsWorker(entry: URL, workerData: unknown, opts: { cacheDir?: string } = {}): Promise<Worker> {
  const bundle = await workerBundle(entry, opts.cacheDir).catch(() => undefined);
  if (bundle) return new Worker(bundle, { workerData: { data: workerData } });
  // tsx's ESM API (its `import` export); createRequire resolves the package's CommonJS one beside it.
  const api = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api')).href.replace(/\.cjs$/, '.mjs');
  const bootstrap = `
    const { workerData } = require('node:worker_threads');
    import(workerData.api).then(({ tsImport }) => tsImport(workerData.entry, workerData.entry));`;
  return new Worker(bootstrap, { eval: true, workerData: { api, entry: entry.href, data: workerData } });
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Beside the runner's bundles; under node_modules, so the bundle's bare imports resolve to the project's packages. */
const CACHE_DIR = join(ROOT, 'node_modules', '.cache', 'ctd', 'workers');
/** Bumped when the build's options change: the key must then change too. */
const BUILD_VERSION = 1;

/**
 * The entry bundled as an ES module, named by the content of every project file it imports (found by
 * their relative specifiers): an edit makes a new file, an unchanged tree reuses the last one
 * without loading esbuild (~0.5 s). Returns the bundle's URL.
 */
export async function workerBundle(entry: URL, cacheDir = CACHE_DIR): Promise<URL> {
  const file = fileURLToPath(entry);
  const key = createHash('sha256').update(`v${BUILD_VERSION}\0`);
  for (const source of await projectImports(file)) key.update(source.path).update('\0').update(source.text).update('\0');
  const out = join(cacheDir, `${basename(file).replace(/\.ts$/, '')}-${key.digest('hex').slice(0, 16)}.mjs`);
  const cached = await readFile(out).then(
    () => true,
    () => false,
  );
  if (!cached) {
    const { build } = await import('esbuild');
    const result = await build({ entryPoints: [file], bundle: true, packages: 'external', platform: 'node', format: 'esm', target: 'node20', write: false, logLevel: 'silent' });
    await mkdir(cacheDir, { recursive: true });
    // Written aside and renamed: an engine starting meanwhile loads the whole file or builds its own.
    const aside = `${out}.${randomUUID()}.tmp`;
    await writeFile(aside, result.outputFiles[0]!.contents);
    await rename(aside, out);
  }
  return pathToFileURL(out);
}

/** The file and every project file it imports, transitively, in a stable order. */
async function projectImports(file: string): Promise<{ path: string; text: string }[]> {
  const found = new Map<string, string>();
  const visit = async (path: string): Promise<void> => {
    if (found.has(path)) return;
    const text = await readFile(path, 'utf8');
    found.set(path, text);
    // `… from './x.ts'`, `import './x.ts'` and `import('./x.ts')`: whatever esbuild would pull into the bundle.
    for (const [, spec] of text.matchAll(/(?:\bfrom\s+|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g)) await visit(resolve(dirname(path), spec!));
  };
  await visit(file);
  return [...found].sort(([a], [b]) => a.localeCompare(b)).map(([path, text]) => ({ path, text }));
}
