#!/usr/bin/env node
// The `ctd` command. Plain JS so `npx ctd` works straight after `npm ci`: tsx compiles the
// TypeScript sources on load, there is no build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
// Let stdout drain naturally, but do not let a lingering handle (keep-alive socket, a
// library's timer) keep a finished command alive.
setTimeout(() => process.exit(), 1000).unref();
