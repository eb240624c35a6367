import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createHash, randomUUID } from 'node:crypto';
import { access, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BuildOptions, Plugin } from 'esbuild';
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
  // The packages' ES module builds: esbuild drops what the runner never imports (the AWS SDK clients' other
  // commands and schemas), which their CommonJS builds keep. About a third of a runner's start-up CPU.
  mainFields: ['module', 'main'],
};

/** Where the runner's bundle publishes the modules its on-demand files share with it (see buildRunner). */
const SHARED = "globalThis[Symbol.for('ctd.runner.shared')]";

/**
 * Builds the runner into `outdir`: runner.cjs (the entry), runner-bundle.cjs (what every runner loads at start)
 * and one runner-NAME.cjs per module the runner imports on demand (`import()` of a project file: each
 * action, the cloud driver), loaded only by the step that needs it. An on-demand file takes the project
 * modules the bundle has from the bundle itself, never a copy of its own: one StepError class, one of
 * each module's state. Returns the files written and, per file name, the source files it holds (relative to root).
 */
export async function buildRunner(opts: {
  root: string;
  outdir: string;
  target?: string;
  logLevel?: 'error' | 'warning';
}): Promise<{ files: string[]; inputs: Record<string, string[]> }> {
  const { build } = await import('esbuild');
  const { root, outdir } = opts;
  const common: BuildOptions = { ...RUNNER_BUILD, ...(opts.target ? { target: opts.target } : {}), absWorkingDir: root, logLevel: opts.logLevel ?? 'error' };
  const onDemand = new Map<string, string>();
  /** `import()` of a project file → its own file beside the bundle. */
  const splitDynamic: Plugin = {
    name: 'ctd-on-demand',
    setup(b) {
      b.onResolve({ filter: /^\./ }, (args) => {
        if (args.kind !== 'dynamic-import' || args.importer.includes('/node_modules/')) return undefined;
        const file = resolve(args.resolveDir, args.path);
        const name = `runner-${basename(file).replace(/\.[cm]?[jt]s$/, '')}`;
        if ([...onDemand].some(([f, n]) => n === name && f !== file)) throw new Error(`two on-demand runner modules are named ${name}`);
        onDemand.set(file, name);
        return { path: `./${name}.cjs`, external: true };
      });
    },
  };
  const entry = runnerEntryPoints(root);
  // First the bundle alone: which project modules it holds, which it imports on demand.
  const probe = await build({ ...common, entryPoints: { 'runner-bundle': entry['runner-bundle']! }, write: false, metafile: true, outdir, plugins: [splitDynamic] });
  const inBundle = new Set(Object.keys(probe.metafile.inputs).filter((f) => !f.includes('node_modules/')).map((f) => resolve(root, f)));
  const shared = new Set<string>();
  const written: string[] = [];
  const inputs: Record<string, string[]> = {};
  const record = (outputs: Record<string, { inputs: Record<string, unknown> }>) => {
    for (const [file, out] of Object.entries(outputs)) {
      written.push(resolve(root, file));
      inputs[basename(file)] = Object.keys(out.inputs);
    }
  };
  // Then the on-demand files (and what they import on demand in turn), each project module of the bundle taken from it.
  for (let done = 0; onDemand.size > done; ) {
    const batch = [...onDemand].slice(done);
    done = onDemand.size;
    const result = await build({
      ...common,
      entryPoints: Object.fromEntries(batch.map(([file, name]) => [name, file])),
      outdir,
      metafile: true,
      plugins: [
        splitDynamic,
        {
          name: 'ctd-shared',
          setup(b) {
            b.onResolve({ filter: /^\./ }, (args) => {
              const file = resolve(args.resolveDir, args.path);
              if (args.kind === 'entry-point' || !inBundle.has(file)) return undefined;
              shared.add(file);
              return { path: relative(root, file), namespace: 'ctd-shared' };
            });
            b.onLoad({ filter: /.*/, namespace: 'ctd-shared' }, (args) => ({ contents: `module.exports = ${SHARED}[${JSON.stringify(args.path)}];`, loader: 'js' }));
          },
        },
      ],
    });
    record(result.metafile.outputs);
  }
  // Last the entry and the bundle, which publishes the shared modules before anything can load an on-demand file.
  const registry = [...shared].sort();
  const result = await build({
    ...common,
    entryPoints: { runner: entry.runner!, 'runner-bundle': 'ctd-runner-bundle' },
    outdir,
    metafile: true,
    plugins: [
      splitDynamic,
      {
        name: 'ctd-registry',
        setup(b) {
          b.onResolve({ filter: /^ctd-runner-bundle$/ }, () => ({ path: 'ctd-runner-bundle', namespace: 'ctd-registry' }));
          b.onLoad({ filter: /.*/, namespace: 'ctd-registry' }, () => ({
            resolveDir: root,
            loader: 'js',
            contents: [
              ...registry.map((file, i) => `import * as m${i} from ${JSON.stringify(file)};`),
              `${SHARED} = {${registry.map((file, i) => `${JSON.stringify(relative(root, file))}: m${i}`).join(', ')}};`,
              `import ${JSON.stringify(entry['runner-bundle'])};`,
            ].join('\n'),
          }));
        },
      },
    ],
  });
  record(result.metafile.outputs);
  return { files: written, inputs };
}

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
  /** The repository whose runner is built (default: this one); tests point it at a copy. */
  root?: string;
  /** Where builds and their keys are kept (default: node_modules/.cache/ctd of this repository). */
  cacheDir?: string;
}

export interface PreparedRunner {
  /** The runner's entry (run it with node). */
  entry: string;
  /** Whether esbuild ran: false when the last build's key still matched and its files were reused. */
  built: boolean;
}

/** Builds the runner (see prepareRunner), or reuses the last build when none of its inputs changed. Returns the runner's entry. */
export async function bundleRunner(opts: BundleOptions = {}): Promise<string> {
  return (await prepareRunner(opts)).entry;
}

/**
 * What the last build of a root was made from: every input file esbuild read (its metafile), and a key
 * over their contents and the build's settings. Kept beside the builds, one per root (worktrees share node_modules).
 */
interface LastBuild {
  key: string;
  /** The input files, absolute. */
  inputs: string[];
  /** The build's directory under the cache dir, and each output file's sha256 there. */
  dir: string;
  outputs: Record<string, string>;
}

const LAST_BUILD_VERSION = 1;

/**
 * Reuses the last build when its key still matches (~0.1 s: hashing the inputs it lists), else builds
 * into a directory named after the content: engines started side by side build the same bytes, and
 * whichever renames its directory first wins, so no engine ever sees half a build.
 */
export async function prepareRunner(opts: BundleOptions = {}): Promise<PreparedRunner> {
  const root = opts.root ?? ROOT;
  const cache = opts.cacheDir ?? join(ROOT, 'node_modules', '.cache', 'ctd');
  const lastFile = join(cache, `last-build-${sha256(root).slice(0, 12)}.json`);
  const last = await readLastBuild(lastFile);
  if (last && buildKey(root, last.inputs) === last.key && (await outputsIntact(join(cache, last.dir), last.outputs))) {
    const entry = join(cache, last.dir, 'runner.cjs');
    await buildCodeCache(entry, opts);
    return { entry, built: false };
  }
  await mkdir(cache, { recursive: true });
  // Unique per build: two engines started in one process in the same millisecond must not share it.
  const aside = join(cache, `building-${process.pid}-${randomUUID()}`);
  // Inputs changed after this (an edit during the build) may or may not be in it: such a build is used once, not recorded.
  const started = Date.now() - MTIME_SLACK_MS;
  const { files, inputs: perOutput } = await buildRunner({ root, outdir: aside });
  const outputs: Record<string, string> = {};
  for (const file of files.sort()) outputs[basename(file)] = sha256(await readFile(file));
  // Named by the bytes themselves, not their sizes: a same-sized edit must not reuse an older runner (or its code cache).
  const digest = createHash('sha256');
  for (const [name, hash] of Object.entries(outputs)) digest.update(name).update(hash);
  const dir = `runner-cjs-${digest.digest('hex').slice(0, 12)}`;
  const target = join(cache, dir);
  await publish(aside, target, outputs);
  const entry = join(target, 'runner.cjs');
  await buildCodeCache(entry, opts);
  const inputs = [...new Set(Object.values(perOutput).flat().filter((f) => !f.startsWith('ctd-')).map((f) => resolve(root, f)))].sort();
  if (await unchangedSince(inputs, started)) {
    await writeAtomically(lastFile, JSON.stringify({ version: LAST_BUILD_VERSION, key: buildKey(root, inputs), inputs, dir, outputs }));
  }
  return { entry, built: true };
}

// The kernel stamps mtimes from a coarse clock (a tick behind Date.now() at most); an edit during the build still lands after this.
const MTIME_SLACK_MS = 100;

function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

async function readLastBuild(file: string): Promise<LastBuild | undefined> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as Partial<LastBuild> & { version?: number };
    if (parsed.version !== LAST_BUILD_VERSION || typeof parsed.key !== 'string' || !Array.isArray(parsed.inputs) || typeof parsed.dir !== 'string' || !parsed.outputs) return undefined;
    return { key: parsed.key, inputs: parsed.inputs, dir: parsed.dir, outputs: parsed.outputs };
  } catch {
    // None yet, or unreadable: build.
    return undefined;
  }
}

/**
 * The build's key: esbuild's version, the options and this builder's own source (its plugins shape the
 * files), the files npm and esbuild read besides the inputs, and every input's path and content.
 */
function buildKey(root: string, inputs: string[]): string {
  const digest = createHash('sha256');
  const esbuildPackage = join(dirname(createRequire(import.meta.url).resolve('esbuild')), '..', 'package.json');
  digest.update(JSON.stringify({ options: RUNNER_BUILD, root })).update('\0');
  const extra = [fileURLToPath(import.meta.url), esbuildPackage, join(root, 'package.json'), join(root, 'tsconfig.json'), join(root, 'node_modules', '.package-lock.json')];
  const files = [...extra, ...inputs];
  // Synchronous on purpose: ~850 small files (3.4 MB) read in ~70 ms, a third of the CPU fs/promises spends on them; this runs once per engine start.
  for (const file of files) digest.update(file).update('\0').update(readOrAbsent(file)).update('\0');
  return digest.digest('hex');
}

/** A file gone since is part of the key too (it no longer matches a build that read it). */
function readOrAbsent(file: string): Buffer | string {
  try {
    return readFileSync(file);
  } catch {
    return '\0absent';
  }
}

async function outputsIntact(dir: string, outputs: Record<string, string>): Promise<boolean> {
  for (const [name, hash] of Object.entries(outputs)) {
    const content = await readFile(join(dir, name)).catch(() => undefined);
    if (!content || sha256(content) !== hash) return false;
  }
  return Object.keys(outputs).length > 0;
}

/** Moves a finished build into place; one already there with the same files is kept (another engine built it first). */
async function publish(aside: string, target: string, outputs: Record<string, string>): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await rename(aside, target);
      return;
    } catch (e) {
      if (await outputsIntact(target, outputs)) {
        await rm(aside, { recursive: true, force: true });
        return;
      }
      // A damaged directory under this name (cleaned by hand, a crash of an older version): replace it.
      if (attempt > 0) throw e;
      await rename(target, `${target}-stale-${randomUUID()}`).catch(() => undefined);
    }
  }
}

async function unchangedSince(files: string[], since: number): Promise<boolean> {
  for (const file of files) {
    const info = await stat(file).catch(() => undefined);
    if (!info || info.mtimeMs >= since) return false;
  }
  return true;
}

/** Written aside and renamed: an engine reading it at the same time sees the old key or the new one, never half. */
async function writeAtomically(file: string, content: string): Promise<void> {
  const aside = `${file}.${process.pid}.${randomUUID()}.tmp`;
  await writeFile(aside, content);
  await rename(aside, file);
}

const CODE_CACHE_BUILD_MS = 60_000;

/**
 * Placeholder settings for the run that builds the cache (sandbox/Dockerfile uses the same): with them the
 * runner builds its clients as a real one does before its task, so that code is in the cache too. Nothing is called.
 */
export const CODE_CACHE_SETTINGS: Record<string, string> = {
  AWS_REGION: 'us-east-1',
  CTD_TABLE_NAME: 'code-cache',
  CTD_KMS_KEY_ID: 'code-cache',
  CTD_CLOUD: 'openstack',
  CTD_KEYSTONE_URL: 'http://127.0.0.1:9/v3',
};

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
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', CTD_TASK_FROM_STDIN: '1', [CODE_CACHE_ENV]: 'write', ...CODE_CACHE_SETTINGS },
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
