import { join } from 'node:path';
import { CODE_CACHE_ENV, codeCacheFile, runWithCodeCache } from './codeCache.ts';

/**
 * The sandbox's entry point when bundled (local/sandbox/runnerBundle.ts, sandbox/Dockerfile): runs
 * the runner's bundle beside it through V8's code cache. `CTD_RUNNER_CODE_CACHE=write` builds the cache.
 */
const bundle = join(__dirname, 'runner-bundle.cjs');
runWithCodeCache({ file: bundle, cacheFile: codeCacheFile(bundle), write: process.env[CODE_CACHE_ENV] === 'write' });
