import { mkdir, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The local counterpart of building the sandbox image: the step runner bundled once per engine
 * start into one ESM file (npm packages stay external and resolve from the project's
 * node_modules). Spawning plain `node` on it starts a sandbox several times faster than
 * transpiling the TypeScript on every step.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export async function bundleRunner(): Promise<string> {
  const { build } = await import('esbuild');
  const outDir = join(ROOT, 'node_modules', '.cache', 'ctd');
  await mkdir(outDir, { recursive: true });
  const outfile = join(outDir, 'runner.mjs');
  const result = await build({
    entryPoints: [join(ROOT, 'sandbox', 'main.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    sourcemap: 'inline',
    logLevel: 'error',
    write: false,
  });
  // Engines started side by side (tests) build the same file: write aside, then rename atomically.
  const aside = `${outfile}.${process.pid}.tmp`;
  await writeFile(aside, result.outputFiles[0]!.contents);
  await rename(aside, outfile);
  return outfile;
}
