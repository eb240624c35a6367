#!/usr/bin/env node
// The `ctd` command. `npm ci` prebuilds the CLI into dist/ctd.js (scripts/build-cli.ts); without
// that bundle, or when a source is newer than it, tsx loads the TypeScript sources instead.
import { readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// `ctd history ID | head` closes the pipe early: that is the reader's choice, not an error.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

const root = fileURLToPath(new URL('..', import.meta.url));

function newestSource(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(path));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

function bundleIsFresh() {
  try {
    const built = statSync(`${root}dist/ctd.js`).mtimeMs;
    return ['cli', 'core'].every((dir) => newestSource(`${root}${dir}`) <= built);
  } catch {
    return false;
  }
}

let main;
if (process.env.CTD_CLI_FROM_SOURCE !== '1' && bundleIsFresh()) {
  ({ main } = await import('../dist/ctd.js'));
} else {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import('../cli/main.ts'));
}
process.exitCode = await main(process.argv.slice(2));
// Let stdout drain naturally, but do not let a lingering handle (keep-alive socket, a
// library's timer) keep a finished command alive.
setTimeout(() => process.exit(), 1000).unref();
