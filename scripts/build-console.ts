import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/**
 * Builds the web console into console/dist: one script (the app with dagre), one stylesheet,
 * index.html. The output is committed, so the engine only serves files and the same folder can
 * be uploaded as static assets in front of API Gateway; test/unit/console-bundle.test.ts fails
 * when the committed files differ from a fresh build.
 *
 *   npm run build:console
 */

const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const CONSOLE_DIST = `${ROOT}console/dist`;

export async function buildConsoleAssets(): Promise<Record<string, string>> {
  const result = await build({
    entryPoints: [`${ROOT}console/src/app.ts`],
    bundle: true,
    format: 'esm',
    target: ['es2022', 'chrome110', 'firefox115', 'safari16'],
    minify: true,
    legalComments: 'eof',
    write: false,
    outfile: 'console.js',
    logLevel: 'silent',
  });
  const script = result.outputFiles.find((f) => f.path.endsWith('.js'));
  if (!script) throw new Error('esbuild produced no script');
  return {
    'index.html': await readFile(`${ROOT}console/index.html`, 'utf8'),
    'console.css': await readFile(`${ROOT}console/src/console.css`, 'utf8'),
    'console.js': script.text,
  };
}

async function main(): Promise<void> {
  await mkdir(CONSOLE_DIST, { recursive: true });
  for (const [name, text] of Object.entries(await buildConsoleAssets())) await writeFile(`${CONSOLE_DIST}/${name}`, text);
  process.stdout.write(`console built into ${CONSOLE_DIST}\n`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
