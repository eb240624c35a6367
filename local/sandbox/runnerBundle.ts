import { createHash, randomUUID } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The local counterpart of building the sandbox image: the step runner and its npm packages
 * bundled once per engine start into minified ESM, as sandbox/Dockerfile does. Node then loads a
 * few files instead of resolving hundreds of AWS SDK modules: a sandbox starts about four times
 * faster than from the npm tree, and far faster than transpiling TypeScript per step.
 */
export const RUNNER_BANNER = [
  "import { createRequire as ctdCreateRequire } from 'node:module';",
  "import { fileURLToPath as ctdFileURLToPath } from 'node:url';",
  'const require = ctdCreateRequire(import.meta.url);',
  'const __filename = ctdFileURLToPath(import.meta.url);',
  "const __dirname = __filename.slice(0, __filename.lastIndexOf('/'));",
].join(' ');

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Builds into a directory named after the content: engines started side by side build the same
 * bytes, and whichever renames its directory first wins. Actions are split into chunks loaded on
 * demand, so a sandbox loads only the code of its own action.
 */
export async function bundleRunner(): Promise<string> {
  const { build } = await import('esbuild');
  const cache = join(ROOT, 'node_modules', '.cache', 'ctd');
  // Unique per build: two engines started in one process in the same millisecond must not share it.
  const aside = join(cache, `building-${process.pid}-${randomUUID()}`);
  await rm(aside, { recursive: true, force: true });
  const result = await build({
    entryPoints: { runner: join(ROOT, 'sandbox', 'main.ts') },
    outdir: aside,
    outExtension: { '.js': '.mjs' },
    bundle: true,
    splitting: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // Optional native add-ons ssh2 tries to load and falls back from.
    external: ['cpu-features', '*.node'],
    minify: true,
    // Bundled CommonJS packages use require() and __dirname, which an ESM file lacks (sandbox/Dockerfile does the same).
    banner: { js: RUNNER_BANNER },
    logLevel: 'error',
    metafile: true,
  });
  const hash = createHash('sha256').update(JSON.stringify(Object.keys(result.metafile.outputs).map((o) => [basename(o), result.metafile.outputs[o]!.bytes]))).digest('hex').slice(0, 12);
  const target = join(cache, `runner-${hash}`);
  try {
    await rename(aside, target);
  } catch {
    // Another engine built the same runner first.
    await rm(aside, { recursive: true, force: true });
  }
  return join(target, 'runner.mjs');
}
