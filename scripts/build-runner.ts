import { fileURLToPath } from 'node:url';
import { buildRunner } from '../local/sandbox/runnerBundle.ts';

/**
 * `tsx scripts/build-runner.ts OUTDIR`: the sandbox image's runner (sandbox/Dockerfile), bundled as
 * local mode bundles it: OUTDIR/runner.cjs (the entry), OUTDIR/runner-bundle.cjs and the on-demand
 * OUTDIR/runner-NAME.cjs files. The image then builds the V8 code cache with its own Node binary.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const outdir = process.argv[2];
if (!outdir) throw new Error('usage: tsx scripts/build-runner.ts OUTDIR');
// The image's Node (sandbox/Dockerfile's FROM).
await buildRunner({ root: ROOT, outdir, target: 'node22', logLevel: 'warning' });
