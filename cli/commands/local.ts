import { CliError, EXIT } from '../errors.ts';
import { ctdHome, fetchOpenrc, mintToken, readEngineInfo, requireEngine } from '../config.ts';
import { renderOpenrc } from '../../local/cloud/openstack/openrc.ts';
import type { CommandContext } from '../context.ts';

/** The embedded engine's entry point (local/engine.ts), as the CLI relies on it. */
export interface LocalEngineOptions {
  stateDir: string;
  apiPort?: number;
  cloud?: 'local' | 'netns';
  timeScale?: number;
  log: (line: string) => void;
}
export interface LocalEngineHandle {
  apiUrl: string;
  cloudUrl: string;
  stop(): Promise<void>;
}
export type StartLocalEngine = (opts: LocalEngineOptions) => Promise<LocalEngineHandle>;

/** Loaded on use: the engine pulls in dynalite, the ASL interpreter and ssh2, far too heavy for `ctd ls`. */
export const loadLocalEngine = async (): Promise<StartLocalEngine> =>
  (await import('../../local/engine.ts')).startLocalEngine;

export interface LocalUpOptions {
  cloud?: string;
  port?: string;
  timeScale?: string;
}

/**
 * `ctd local up`: runs the engine in the foreground until SIGINT/SIGTERM. The first signal
 * stops it cleanly (servers, sandboxes, cloud resources); a second one exits at once for a
 * user whose shutdown hangs.
 */
export async function localUp(
  ctx: CommandContext,
  opts: LocalUpOptions,
  start: () => Promise<StartLocalEngine> = loadLocalEngine,
): Promise<number> {
  const stateDir = ctdHome(ctx.environment);
  const running = await readEngineInfo(stateDir);
  if (running) {
    throw new CliError(`an engine is already running for ${stateDir} (pid ${running.pid}, ${running.apiUrl})`);
  }
  const engineOptions: LocalEngineOptions = { stateDir, log: (line) => ctx.print(line) };
  if (opts.cloud !== undefined) {
    if (opts.cloud !== 'local' && opts.cloud !== 'netns') throw new CliError(`--cloud must be local or netns, not "${opts.cloud}"`);
    engineOptions.cloud = opts.cloud;
  }
  if (opts.port !== undefined) engineOptions.apiPort = parseNumber('--port', opts.port, (n) => Number.isInteger(n) && n >= 0 && n <= 65535);
  if (opts.timeScale !== undefined) engineOptions.timeScale = parseNumber('--time-scale', opts.timeScale, (n) => n > 0);

  const startLocalEngine = await start();
  const engine = await startLocalEngine(engineOptions);
  // The engine itself advertises its URLs in <stateDir>/engine.json and removes the file on stop.
  ctx.print(`CTD engine running — API ${engine.apiUrl}`);
  ctx.print(`  cloud: ${engine.cloudUrl}`);
  ctx.print(`  state: ${stateDir}`);
  ctx.print('Press Ctrl-C to stop.');

  const { signals } = ctx.io;
  let stopping: Promise<number> | undefined;
  let signalled!: () => void;
  const firstSignal = new Promise<void>((resolve) => (signalled = resolve));
  const onSignal = () => {
    if (stopping) {
      ctx.error('forced exit');
      ctx.io.exit(130);
      return;
    }
    ctx.error('stopping the engine… (Ctrl-C again to force)');
    stopping = engine.stop().then(
      () => EXIT.ok,
      (err: unknown) => {
        ctx.error(`engine stop failed: ${err instanceof Error ? err.message : String(err)}`);
        return EXIT.failed;
      },
    );
    signalled();
  };
  signals.on('SIGINT', onSignal);
  signals.on('SIGTERM', onSignal);
  await firstSignal;
  const code = await (stopping ?? Promise.resolve(EXIT.ok));
  signals.off('SIGINT', onSignal);
  signals.off('SIGTERM', onSignal);
  if (code === EXIT.ok) ctx.print('engine stopped');
  return code;
}

function parseNumber(flag: string, value: string, valid: (n: number) => boolean): number {
  const n = Number(value);
  if (!value.trim() || !Number.isFinite(n) || !valid(n)) throw new CliError(`${flag}: invalid value "${value}"`);
  return n;
}

/** `ctd local token --tenant NAME`: a fresh token from the local cloud, for scripts and other tenants. */
export async function localToken(ctx: CommandContext, opts: { tenant: string }): Promise<number> {
  const engine = await requireEngine(ctx.environment);
  const token = await mintToken(engine.cloudUrl, opts.tenant, ctx.io.fetch);
  if (ctx.json) ctx.printJson({ tenantId: opts.tenant, token });
  else ctx.io.stdout.write(`${token}\n`);
  return EXIT.ok;
}

/**
 * `ctd local openrc --tenant NAME`: an OpenStack RC for the running engine's local cloud
 * (`. <(ctd local openrc --tenant t1)` then `openstack server list`). Each call sets a fresh
 * password for the tenant's user; the project and its bastion are created on first use.
 */
export async function localOpenrc(ctx: CommandContext, opts: { tenant: string }): Promise<number> {
  const engine = await requireEngine(ctx.environment);
  const env = await fetchOpenrc(engine.cloudUrl, opts.tenant, ctx.io.fetch);
  if (ctx.json) ctx.printJson(env);
  else ctx.io.stdout.write(renderOpenrc(env));
  return EXIT.ok;
}
