import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import { Script } from 'node:vm';

/**
 * Runs a CommonJS bundle through V8's code cache. Compiling the runner's ~1.6 MB of JavaScript is
 * about a third of a sandbox's start-up CPU; with the cache built once per Node binary and bundle
 * (local/sandbox/runnerBundle.ts, sandbox/Dockerfile) V8 skips it. Node 20 has no compile cache of
 * its own (module.enableCompileCache is 22.1+), and a startup snapshot cannot hold node:http there: with it
 * loaded lazily one builds, but saves under a tenth of this boot's CPU (reading the blob and its heap cost nearly what they spare).
 */

/** `write`: the entry (sandbox/cachedMain.ts) writes the cache when the process exits. */
export const CODE_CACHE_ENV = 'CTD_RUNNER_CODE_CACHE';

export type CodeCacheUse = 'used' | 'rejected' | 'absent';

export interface CodeCacheOptions {
  /** The CommonJS bundle to run. */
  file: string;
  /** Its V8 code cache (see codeCacheFile); a missing or stale one only costs the compile. */
  cacheFile: string;
  /** Write the cache when the process exits, after the bundle ran: it then holds the functions compiled while loading too. */
  write: boolean;
}

/** One cache per Node binary: V8 rejects a cache made by another version or architecture. */
export function codeCacheFile(bundle: string): string {
  return `${bundle.replace(/\.cjs$/, '')}.${process.version}-${process.arch}.v8cache`;
}

export function runWithCodeCache(opts: CodeCacheOptions): CodeCacheUse {
  const source = readFileSync(opts.file, 'utf8');
  let cachedData: Buffer | undefined;
  try {
    cachedData = readFileSync(opts.cacheFile);
  } catch {
    cachedData = undefined;
  }
  // Node's own CommonJS wrapper, so the bundle sees exactly what require() would give it.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) { ${source}\n});`, {
    filename: opts.file,
    ...(cachedData ? { cachedData } : {}),
  });
  const use: CodeCacheUse = !cachedData ? 'absent' : script.cachedDataRejected ? 'rejected' : 'used';
  const wrapper = script.runInThisContext() as (exports: object, require: NodeJS.Require, module: object, filename: string, dirname: string) => void;
  const module = { exports: {} };
  wrapper.call(module.exports, module.exports, createRequire(opts.file), module, opts.file, dirname(opts.file));
  if (opts.write) {
    process.once('exit', (code) => {
      // Only from a clean run: a bundle that fails while loading must not look built.
      if (code !== 0) return;
      // Written aside and renamed: engines building at once, or a runner reading now, never see half a file.
      const aside = `${opts.cacheFile}.${process.pid}.tmp`;
      writeFileSync(aside, script.createCachedData());
      renameSync(aside, opts.cacheFile);
    });
  }
  return use;
}
