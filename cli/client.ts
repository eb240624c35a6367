import type {
  CancelResponse,
  DeploymentView,
  ErrorResponse,
  HistoryResponse,
  ListResponse,
  LogsResponse,
  SubmitResponse,
} from '../core/api.ts';

/**
 * Typed client of the HTTP API (core/api.ts is the contract): one method per endpoint.
 * The same client talks to the local engine and to a deployed API Gateway; only the base URL
 * and the token differ.
 */

/** The server answered with a 4xx/5xx; `message` and `issues` are the server's own words. */
export class ApiError extends Error {
  override readonly name = 'ApiError';
  constructor(
    readonly status: number,
    message: string,
    readonly issues: { path: string; message: string }[] = [],
  ) {
    super(message);
  }
}

/** No HTTP answer at all (connection refused, DNS, timeout): a different exit code than a 4xx. */
export class EndpointUnreachableError extends Error {
  override readonly name = 'EndpointUnreachableError';
  constructor(
    readonly endpoint: string,
    reason: string,
  ) {
    super(`cannot reach ${endpoint}: ${reason}`);
  }
}

/**
 * Where the bearer token comes from. `refresh` exists for tokens the CLI minted itself (local
 * engine): after a 401 it may mint a new one once, since a restarted engine forgets old tokens.
 */
export interface TokenSource {
  get(): Promise<string | undefined>;
  refresh?(): Promise<string | undefined>;
}

export interface ClientOptions {
  endpoint: string;
  token: TokenSource;
  /** Injected for tests; defaults to the global fetch. */
  fetch?: typeof fetch;
  /** Per-request timeout; an API call that hangs longer is treated as unreachable. */
  timeoutMs?: number;
}

export interface SubmitOptions {
  idempotencyKey?: string;
}

export class CtdClient {
  private readonly base: string;
  private readonly fetchImpl: typeof fetch;
  private readonly timeoutMs: number;

  constructor(private readonly options: ClientOptions) {
    this.base = options.endpoint.replace(/\/+$/, '');
    this.fetchImpl = options.fetch ?? fetch;
    this.timeoutMs = options.timeoutMs ?? 30_000;
  }

  submit(deployment: unknown, opts: SubmitOptions = {}): Promise<SubmitResponse> {
    const headers: Record<string, string> = {};
    if (opts.idempotencyKey) headers['Idempotency-Key'] = opts.idempotencyKey;
    return this.request<SubmitResponse>('POST', '/deployments', { body: deployment, headers });
  }

  list(opts: { cursor?: string; limit?: number } = {}): Promise<ListResponse> {
    const query = new URLSearchParams();
    if (opts.cursor) query.set('cursor', opts.cursor);
    if (opts.limit) query.set('limit', String(opts.limit));
    return this.request<ListResponse>('GET', `/deployments${queryString(query)}`);
  }

  get(id: string): Promise<DeploymentView> {
    return this.request<DeploymentView>('GET', `/deployments/${encodeURIComponent(id)}`);
  }

  history(id: string): Promise<HistoryResponse> {
    return this.request<HistoryResponse>('GET', `/deployments/${encodeURIComponent(id)}/history`);
  }

  logs(id: string, opts: { step?: string } = {}): Promise<LogsResponse> {
    const query = new URLSearchParams();
    if (opts.step) query.set('step', opts.step);
    return this.request<LogsResponse>('GET', `/deployments/${encodeURIComponent(id)}/logs${queryString(query)}`);
  }

  cancel(id: string): Promise<CancelResponse> {
    return this.request<CancelResponse>('DELETE', `/deployments/${encodeURIComponent(id)}`);
  }

  private async request<T>(
    method: string,
    path: string,
    init: { body?: unknown; headers?: Record<string, string> } = {},
  ): Promise<T> {
    let response = await this.send(method, path, init, await this.options.token.get());
    if (response.status === 401 && this.options.token.refresh) {
      const fresh = await this.options.token.refresh();
      if (fresh) response = await this.send(method, path, init, fresh);
    }
    const text = await response.text();
    const body = parseJson(text);
    if (!response.ok) throw toApiError(response.status, body, text);
    return body as T;
  }

  private async send(
    method: string,
    path: string,
    init: { body?: unknown; headers?: Record<string, string> },
    token: string | undefined,
  ): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json', ...init.headers };
    if (token) headers.authorization = `Bearer ${token}`;
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    try {
      return await this.fetchImpl(`${this.base}${path}`, {
        method,
        headers,
        body: init.body === undefined ? undefined : JSON.stringify(init.body),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      throw new EndpointUnreachableError(this.base, describeFetchFailure(err));
    }
  }
}

function queryString(query: URLSearchParams): string {
  const s = query.toString();
  return s ? `?${s}` : '';
}

function parseJson(text: string): unknown {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function toApiError(status: number, body: unknown, text: string): ApiError {
  const err = (body ?? {}) as Partial<ErrorResponse>;
  const message =
    typeof err.message === 'string' && err.message
      ? err.message
      : `HTTP ${status}${text && body === undefined ? `: ${text.slice(0, 200)}` : ''}`;
  const issues = Array.isArray(err.issues)
    ? err.issues.filter((i) => i && typeof i.path === 'string' && typeof i.message === 'string')
    : [];
  return new ApiError(status, message, issues);
}

/** undici wraps the real reason (ECONNREFUSED, ENOTFOUND…) in `cause`; that is what a user needs. */
function describeFetchFailure(err: unknown): string {
  if (err instanceof Error) {
    if (err.name === 'TimeoutError') return 'request timed out';
    const cause = (err as Error & { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as Error & { code?: string }).code;
      return code ? `${code} (${cause.message})` : cause.message;
    }
    return err.message;
  }
  return String(err);
}
