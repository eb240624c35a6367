import { CliError, EXIT } from '../errors.ts';
import { ctdHome, DEFAULT_TENANT, fetchOpenrc, mintToken, readEngineInfo, requireEngine } from '../config.ts';
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
  consoleUrl: string;
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
  for (const line of banner(engine, stateDir)) ctx.print(line);

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

/** Where everything is, and how to reach it, for a user who just typed `ctd local up`. */
export function banner(engine: Pick<LocalEngineHandle, 'apiUrl' | 'consoleUrl' | 'cloudUrl'>, stateDir: string): string[] {
  return [
    'CTD engine running',
    `  console  ${engine.consoleUrl}/   sign in with the link \`ctd local console\` prints`,
    `  API      ${engine.apiUrl}   (ctd deploy FILE, ctd ls … use it; curl with a token from \`ctd local token --tenant default\`)`,
    `  cloud    ${engine.cloudUrl}   (the local OpenStack; the bastion is the address your deployment names, opened to the engine only while a deployment runs)`,
    '  AWS      eval "$(ctd local env)" points the AWS CLI and SDKs at the local Step Functions, DynamoDB and KMS',
    `  state    ${stateDir}`,
    'Press Ctrl-C to stop.',
  ];
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

/**
 * `ctd local env`: shell exports that point the AWS SDKs and CLI at the engine's local Step
 * Functions, DynamoDB and KMS. `eval "$(ctd local env)"`. The credentials are placeholders: the
 * local services accept any.
 */
export async function localEnv(ctx: CommandContext): Promise<number> {
  const engine = await requireEngine(ctx.environment);
  if (!engine.endpoints) throw new CliError('this engine does not advertise its AWS endpoints; restart it with this version of ctd');
  const region = engine.region ?? 'us-east-1';
  const vars: [string, string][] = [
    ['AWS_ENDPOINT_URL_SFN', engine.endpoints.sfn],
    ['AWS_ENDPOINT_URL_DYNAMODB', engine.endpoints.dynamodb],
    ['AWS_ENDPOINT_URL_KMS', engine.endpoints.kms],
    ['AWS_REGION', region],
    ['AWS_DEFAULT_REGION', region],
    ['AWS_ACCESS_KEY_ID', 'local'],
    ['AWS_SECRET_ACCESS_KEY', 'local'],
  ];
  if (ctx.json) {
    ctx.printJson(Object.fromEntries(vars));
    return EXIT.ok;
  }
  for (const [name, value] of vars) ctx.print(`export ${name}=${value}`);
  ctx.print('# AWS CLI 2.13+ and the SDKs read AWS_ENDPOINT_URL_<SERVICE>; older CLIs need the endpoint spelled out:');
  ctx.print('#   aws --endpoint-url "$AWS_ENDPOINT_URL_SFN" stepfunctions list-executions --state-machine-arn arn:aws:states:us-east-1:000000000000:stateMachine:ctd-deployment');
  ctx.print('#   aws --endpoint-url "$AWS_ENDPOINT_URL_DYNAMODB" dynamodb list-tables');
  ctx.print('#   aws --endpoint-url "$AWS_ENDPOINT_URL_KMS" kms list-keys');
  return EXIT.ok;
}

/**
 * `ctd local console`: the web console's address with a fresh token in the fragment (which the
 * browser never sends to a server, and the page removes at once).
 */
export async function localConsole(ctx: CommandContext, opts: { tenant?: string }): Promise<number> {
  const engine = await requireEngine(ctx.environment);
  const consoleUrl = engine.consoleUrl ?? `${engine.apiUrl.replace(/\/+$/, '')}/console`;
  const token = await mintToken(engine.cloudUrl, opts.tenant ?? DEFAULT_TENANT, ctx.io.fetch);
  if (ctx.json) ctx.printJson({ consoleUrl: `${consoleUrl}/`, signInUrl: `${consoleUrl}/#/?token=${encodeURIComponent(token)}` });
  else ctx.io.stdout.write(`${consoleUrl}/#/?token=${encodeURIComponent(token)}\n`);
  return EXIT.ok;
}
