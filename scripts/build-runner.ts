import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { RUNNER_BUILD, runnerEntryPoints } from '../local/sandbox/runnerBundle.ts';

/**
 * `tsx scripts/build-runner.ts OUTDIR`: the sandbox image's runner (sandbox/Dockerfile), bundled as
 * local mode bundles it: OUTDIR/runner.cjs (the entry) and OUTDIR/runner-bundle.cjs. The image
 * then builds the V8 code cache with its own Node binary.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const outdir = process.argv[2];
if (!outdir) throw new Error('usage: tsx scripts/build-runner.ts OUTDIR');
await build({
  ...RUNNER_BUILD,
  entryPoints: runnerEntryPoints(ROOT),
  // The image's Node (sandbox/Dockerfile's FROM).
  target: 'node22',
  outdir,
  logLevel: 'warning',
});
