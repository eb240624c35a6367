import type { CancelResponse, DeploymentView, ErrorResponse, HistoryResponse, ListResponse, LogsResponse } from '../../core/api.ts';

/**
 * The console's only way to the engine: the public HTTP API with the user's token, so the same
 * page works served by the local engine and as static files in front of API Gateway.
 */

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface Session {
  /** API base URL without a trailing slash, e.g. http://127.0.0.1:4580 or https://x.execute-api…/prod */
  apiUrl: string;
  token: string;
}

export class Api {
  constructor(private readonly session: Session) {}

  private async request<T>(method: string, path: string): Promise<T> {
    const res = await fetch(`${this.session.apiUrl}${path}`, {
      method,
      headers: { authorization: `Bearer ${this.session.token}`, accept: 'application/json' },
    });
    const text = await res.text();
    const body: unknown = text ? JSON.parse(text) : undefined;
    if (!res.ok) throw new ApiError(res.status, (body as ErrorResponse | undefined)?.message ?? `HTTP ${res.status}`);
    return body as T;
  }

  list(): Promise<ListResponse> {
    return this.request('GET', '/deployments?limit=100');
  }
  get(id: string): Promise<DeploymentView> {
    return this.request('GET', `/deployments/${encodeURIComponent(id)}`);
  }
  history(id: string): Promise<HistoryResponse> {
    return this.request('GET', `/deployments/${encodeURIComponent(id)}/history`);
  }
  logs(id: string, step?: string): Promise<LogsResponse> {
    const query = step ? `?step=${encodeURIComponent(step)}` : '';
    return this.request('GET', `/deployments/${encodeURIComponent(id)}/logs${query}`);
  }
  cancel(id: string): Promise<CancelResponse> {
    return this.request('DELETE', `/deployments/${encodeURIComponent(id)}`);
  }
}
