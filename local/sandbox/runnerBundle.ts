import { spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { access, readFile, rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BuildOptions } from 'esbuild';
import { CODE_CACHE_ENV, codeCacheFile } from '../../sandbox/codeCache.ts';

/**
 * The local counterpart of building the sandbox image: the step runner and its npm packages
 * bundled once per engine start into one minified CommonJS file, as sandbox/Dockerfile does, plus
 * V8's code cache for it. Node then loads two files instead of resolving hundreds of AWS SDK
 * modules, and skips compiling them: docs/BENCHMARKS.md §2 has the figures.
 */

/** The bundle's one use of import.meta (sandbox/ansible/workspace.ts), which CommonJS lacks. */
export const RUNNER_BANNER = "var ctdImportMetaUrl = require('node:url').pathToFileURL(__filename).href;";

/**
 * esbuild options shared with sandbox/Dockerfile. Dynamic import() becomes require(): the
 * bundle runs in a vm.Script (sandbox/codeCache.ts), which has no ESM loader; the actions' code
 * still runs only when a step needs it.
 */
export const RUNNER_BUILD: BuildOptions = {
  outExtension: { '.js': '.cjs' },
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  supported: { 'dynamic-import': false },
  // Optional native add-ons ssh2 tries to load and falls back from.
  external: ['cpu-features', '*.node'],
  define: { 'import.meta.url': 'ctdImportMetaUrl' },
  banner: { js: RUNNER_BANNER },
  minify: true,
};

/** The entry (sandbox/cachedMain.ts) and the runner it loads, relative to the repository's root. */
export function runnerEntryPoints(root: string): Record<string, string> {
  return { runner: join(root, 'sandbox', 'cachedMain.ts'), 'runner-bundle': join(root, 'sandbox', 'main.ts') };
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface BundleOptions {
  /** Where the code cache's build is reported when it fails (the runner then compiles at every start). */
  log?: (line: string) => void;
  /** The Node binary the runners use; the code cache is built with it. */
  node?: string;
}

/**
 * Builds into a directory named after the content: engines started side by side build the same
 * bytes, and whichever renames its directory first wins. Returns the runner's entry (run it with node).
 */
export async function bundleRunner(opts: BundleOptions = {}): Promise<string> {
  const { build } = await import('esbuild');
  const cache = join(ROOT, 'node_modules', '.cache', 'ctd');
  // Unique per build: two engines started in one process in the same millisecond must not share it.
  const aside = join(cache, `building-${process.pid}-${randomUUID()}`);
  await rm(aside, { recursive: true, force: true });
  const result = await build({
    ...RUNNER_BUILD,
    entryPoints: runnerEntryPoints(ROOT),
    outdir: aside,
    logLevel: 'error',
    metafile: true,
    // Output paths in the metafile are relative to this.
    absWorkingDir: ROOT,
  });
  // Named by the bytes themselves, not their sizes: a same-sized edit must not reuse an older runner (or its code cache).
  const digest = createHash('sha256');
  for (const output of Object.keys(result.metafile.outputs).sort()) digest.update(basename(output)).update(await readFile(join(ROOT, output)));
  const hash = digest.digest('hex').slice(0, 12);
  const target = join(cache, `runner-cjs-${hash}`);
  try {
    await rename(aside, target);
  } catch {
    // Another engine built the same runner first.
    await rm(aside, { recursive: true, force: true });
  }
  const entry = join(target, 'runner.cjs');
  await buildCodeCache(entry, opts);
  return entry;
}

const CODE_CACHE_BUILD_MS = 60_000;

/**
 * Runs the runner once with nothing to do (it loads its modules, reads EOF, exits) so it writes its
 * code cache. Best effort: without a cache every sandbox still starts, compiling its code itself.
 */
export async function buildCodeCache(entry: string, opts: BundleOptions = {}): Promise<boolean> {
  const cacheFile = codeCacheFile(join(entry, '..', 'runner-bundle.cjs'));
  const node = opts.node ?? process.execPath;
  // Per Node binary: a cache written by another version is only rejected, so check the one this runs.
  if (node === process.execPath && (await access(cacheFile).then(() => true, () => false))) return true;
  const failed = await new Promise<string | undefined>((resolve) => {
    const child = spawn(node, [entry], {
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CTD_TASK_FROM_STDIN: '1', [CODE_CACHE_ENV]: 'write' },
      stdio: ['ignore', 'ignore', 'pipe'],
      timeout: CODE_CACHE_BUILD_MS,
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', (e) => resolve(e.message));
    child.once('close', (code, signal) => resolve(code === 0 ? undefined : `exit ${code ?? signal}: ${stderr.trim().slice(0, 500)}`));
  });
  if (failed === undefined) return true;
  opts.log?.(`runner code cache not built (sandboxes will compile the runner at each start): ${failed}`);
  return false;
}
