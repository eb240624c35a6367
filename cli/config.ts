import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ApiError, EndpointUnreachableError, type TokenSource } from './client.ts';
import { CliError, EXIT } from './errors.ts';

/**
 * Where the CLI finds its engine and its token. A running local engine advertises itself in
 * `<CTD_HOME>/engine.json`; `--endpoint`/`--token` (or `CTD_TOKEN`) point anywhere else, e.g.
 * a deployed API Gateway, with the same commands.
 */

/** What a running local engine writes to `<CTD_HOME>/engine.json`. */
export interface EngineInfo {
  apiUrl: string;
  cloudUrl: string;
  pid: number;
  /** The web console (engines before it had none). */
  consoleUrl?: string;
  /** The local AWS services, for `ctd local env`. */
  endpoints?: { sfn: string; dynamodb: string; kms: string };
  region?: string;
}

export const ENGINE_FILE = 'engine.json';
export const TOKEN_FILE = 'cli-token';
/** The tenant the CLI acts as against the local engine when the user gives no token. */
export const DEFAULT_TENANT = 'default';

export const NO_ENGINE_MESSAGE = 'no local engine is running (start one with `ctd local up`) — or pass --endpoint';

export interface Environment {
  env: NodeJS.ProcessEnv;
  cwd: string;
  fetch?: typeof fetch;
}

/** `CTD_HOME`, else `./.ctd`: state stays beside the project unless the user says otherwise. */
export function ctdHome({ env, cwd }: Environment): string {
  return path.resolve(cwd, env.CTD_HOME || '.ctd');
}

/** `kill(pid, 0)` probes without signalling; EPERM means alive but someone else's. */
export function isProcessAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The running local engine, or undefined when the file is absent, unreadable or its pid is dead (stale). */
export async function readEngineInfo(home: string): Promise<EngineInfo | undefined> {
  let raw: string;
  try {
    raw = await readFile(path.join(home, ENGINE_FILE), 'utf8');
  } catch {
    return undefined;
  }
  let info: Partial<EngineInfo>;
  try {
    info = JSON.parse(raw) as Partial<EngineInfo>;
  } catch {
    return undefined;
  }
  if (typeof info.apiUrl !== 'string' || typeof info.cloudUrl !== 'string' || typeof info.pid !== 'number') {
    return undefined;
  }
  if (!isProcessAlive(info.pid)) return undefined;
  return {
    apiUrl: info.apiUrl,
    cloudUrl: info.cloudUrl,
    pid: info.pid,
    ...(typeof info.consoleUrl === 'string' ? { consoleUrl: info.consoleUrl } : {}),
    ...(info.endpoints && typeof info.endpoints === 'object' ? { endpoints: info.endpoints } : {}),
    ...(typeof info.region === 'string' ? { region: info.region } : {}),
  };
}

/**
 * Calls the local cloud's loopback-only admin path (`/_admin/...`), which mints tokens and
 * hands out openrc passwords: the local cloud is single-user (see local/cloud/server.ts).
 */
async function localCloudAdmin(cloudUrl: string, path: string, body: unknown, what: string, fetchImpl: typeof fetch): Promise<Record<string, unknown>> {
  const base = cloudUrl.replace(/\/+$/, '');
  let response: Response;
  try {
    response = await fetchImpl(`${base}/_admin/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(15_000),
    });
  } catch (err) {
    const cause = (err as Error & { cause?: Error }).cause;
    throw new EndpointUnreachableError(base, cause?.message ?? (err as Error).message);
  }
  const answer = (await response.json().catch(() => undefined)) as Record<string, unknown> | undefined;
  if (!response.ok) {
    const message = typeof answer?.message === 'string' ? answer.message : `HTTP ${response.status}`;
    throw new ApiError(response.status, `could not get ${what} from the local cloud: ${message}`);
  }
  return answer ?? {};
}

/** A Keystone token of the tenant's project from the local cloud (`POST /_admin/tokens`). */
export async function mintToken(cloudUrl: string, tenantId: string, fetchImpl: typeof fetch = fetch): Promise<string> {
  const body = await localCloudAdmin(cloudUrl, 'tokens', { tenant: tenantId }, 'a token', fetchImpl);
  if (typeof body.token !== 'string' || !body.token) throw new ApiError(200, 'the local cloud answered without a token');
  return body.token;
}

/** The OpenStack RC of a tenant, with a fresh password for its user (`POST /_admin/openrc`). */
export async function fetchOpenrc(cloudUrl: string, tenantId: string, fetchImpl: typeof fetch = fetch): Promise<Record<string, string>> {
  const body = await localCloudAdmin(cloudUrl, 'openrc', { tenant: tenantId }, 'an openrc', fetchImpl);
  const env = body.env;
  if (typeof env !== 'object' || env === null || !Object.values(env).every((v) => typeof v === 'string')) {
    throw new ApiError(200, 'the local cloud answered without an openrc');
  }
  return env as Record<string, string>;
}

/**
 * The token for the local engine when the user gave none: minted once for tenant `default`
 * and cached 0600 in `<home>/cli-token`, so every command acts as the same tenant and sees
 * the deployments the previous command made.
 */
export function cachedLocalToken(home: string, engine: EngineInfo, fetchImpl?: typeof fetch): TokenSource {
  const file = path.join(home, TOKEN_FILE);
  const mint = async (): Promise<string> => {
    const token = await mintToken(engine.cloudUrl, DEFAULT_TENANT, fetchImpl);
    await mkdir(home, { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    await writeFile(tmp, token, { mode: 0o600 });
    await rename(tmp, file);
    return token;
  };
  return {
    async get() {
      const cached = await readFile(file, 'utf8').catch(() => '');
      return cached.trim() || mint();
    },
    refresh: mint,
  };
}

export interface Connection {
  endpoint: string;
  token: TokenSource;
  /** The local engine when the endpoint is it (for console links, token minting). */
  engine?: EngineInfo;
}

/**
 * Resolves `--endpoint` / `--token` / `CTD_TOKEN` / engine.json into where to send requests
 * and with which token. An explicit token always wins; the minted fallback applies only to
 * the local engine, never to a remote endpoint (it would send a local token elsewhere).
 */
export async function resolveConnection(
  opts: { endpoint?: string; token?: string },
  environment: Environment,
): Promise<Connection> {
  const home = ctdHome(environment);
  const engine = await readEngineInfo(home);
  const endpoint = opts.endpoint ?? engine?.apiUrl;
  if (!endpoint) throw new CliError(NO_ENGINE_MESSAGE, EXIT.unreachable);
  const local = engine !== undefined && sameUrl(endpoint, engine.apiUrl) ? engine : undefined;
  const explicit = opts.token ?? environment.env.CTD_TOKEN;
  if (explicit) return { endpoint, token: { get: async () => explicit }, engine: local };
  if (!local) {
    throw new CliError(`no token for ${endpoint}: pass --token or set CTD_TOKEN`, EXIT.rejected);
  }
  return { endpoint, token: cachedLocalToken(home, local, environment.fetch), engine: local };
}

function sameUrl(a: string, b: string): boolean {
  return a.replace(/\/+$/, '') === b.replace(/\/+$/, '');
}

/** The local engine or the standard "none running" error; for `ctd local token`. */
export async function requireEngine(environment: Environment): Promise<EngineInfo> {
  const engine = await readEngineInfo(ctdHome(environment));
  if (!engine) throw new CliError(NO_ENGINE_MESSAGE, EXIT.unreachable);
  return engine;
}
