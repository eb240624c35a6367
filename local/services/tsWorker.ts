import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';

/**
 * A worker thread running a TypeScript module of this project. The engine itself runs under tsx
 * (the CLI, the demo) or vitest, whose loaders a worker does not inherit in both cases: the worker
 * loads the module through tsx's scoped `tsImport`, which works under either.
 */
export function startTsWorker(entry: URL, workerData: unknown): Worker {
  // tsx's ESM API (its `import` export); createRequire resolves the package's CommonJS one beside it.
  const api = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm/api')).href.replace(/\.cjs$/, '.mjs');
  const bootstrap = `
    const { workerData } = require('node:worker_threads');
    import(workerData.api).then(({ tsImport }) => tsImport(workerData.entry, workerData.entry));`;
  return new Worker(bootstrap, { eval: true, workerData: { api, entry: entry.href, data: workerData } });
}
