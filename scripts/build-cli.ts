import { mkdir, rename, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';

/**
 * Bundles the `ctd` CLI into dist/ctd.js so `npx ctd` starts plain JavaScript instead of
 * registering tsx and compiling ~40 TypeScript modules on every run. npm runs this as `prepare`
 * after `npm ci`; bin/ctd.js falls back to the TypeScript sources when the bundle is missing or
 * older than them, so an edited checkout never runs stale code.
 *
 * Packages stay external (node_modules is there). The embedded engine is not bundled: its
 * modules find the state machine, the runner and the ansible plugins relative to their own
 * files, so `ctd local up` loads local/engine.ts through tsx, as before.
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CLI_BUNDLE = `${ROOT}dist/ctd.js`;
/** What the bundle is made of: bin/ctd.js compares their times with the bundle's. */
export const CLI_SOURCES = ['cli', 'core'];

const engineThroughTsx: Plugin = {
  name: 'engine-through-tsx',
  setup(b) {
    b.onResolve({ filter: /\/local\/engine\.ts$/ }, () => ({ path: 'engine', namespace: 'ctd-engine' }));
    b.onLoad({ filter: /.*/, namespace: 'ctd-engine' }, () => ({
      loader: 'js',
      resolveDir: ROOT,
      contents: `
        export async function startLocalEngine(opts) {
          const { register } = await import('tsx/esm/api');
          register();
          const engine = await import(new URL('../local/engine.ts', import.meta.url).href);
          return engine.startLocalEngine(opts);
        }`,
    }));
  },
};

export async function buildCli(outfile = CLI_BUNDLE): Promise<void> {
  await mkdir(new URL('.', `file://${outfile}`), { recursive: true });
  const result = await build({
    write: false,
    entryPoints: [`${ROOT}cli/main.ts`],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    plugins: [engineThroughTsx],
    outfile,
    logLevel: 'warning',
    legalComments: 'none',
  });
  const bundle = result.outputFiles[0];
  if (!bundle) throw new Error('esbuild produced no bundle');
  // Written aside and renamed: a `ctd` starting meanwhile reads the old bundle or the new one, never half of one.
  await writeFile(`${outfile}.${process.pid}.tmp`, bundle.contents);
  await rename(`${outfile}.${process.pid}.tmp`, outfile);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await buildCli();
