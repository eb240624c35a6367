import type { z } from 'zod';
import { ErrorName, StepError } from '../../core/errors.ts';
import { errorForNetworkFailure, errorForStatus, scrub } from './errors.ts';

export type Fetch = typeof globalThis.fetch;

export interface HttpRequest {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  url: string;
  /** What the call does, for error messages ("creating network private"). */
  what: string;
  body?: unknown;
  headers?: Record<string, string>;
  /** Statuses returned to the caller instead of thrown (404 on a lookup or a delete, 409 on a create). */
  accept?: readonly number[];
}

export interface HttpAnswer {
  status: number;
  /** The parsed JSON body; undefined when empty or not JSON. */
  body: unknown;
  text: string;
  headers: Headers;
}

/**
 * The one place the driver touches HTTP. The token travels only as X-Auth-Token; every failure
 * leaves as a StepError of the error table with the token scrubbed from its message.
 */
export class OpenStackHttp {
  constructor(private readonly opts: { fetch?: Fetch; timeoutMs?: number } = {}) {}

  async call(token: string, req: HttpRequest): Promise<HttpAnswer> {
    const doFetch = this.opts.fetch ?? globalThis.fetch;
    let res: Response;
    let text: string;
    try {
      res = await doFetch(req.url, {
        method: req.method,
        headers: {
          accept: 'application/json',
          'x-auth-token': token,
          ...(req.body === undefined ? {} : { 'content-type': 'application/json' }),
          ...req.headers,
        },
        ...(req.body === undefined ? {} : { body: JSON.stringify(req.body) }),
        signal: AbortSignal.timeout(this.opts.timeoutMs ?? 60_000),
      });
      text = await res.text();
    } catch (e) {
      throw errorForNetworkFailure(e, req.what, token);
    }
    if (!res.ok && !req.accept?.includes(res.status)) throw errorForStatus(res.status, text, req.what, token);
    let body: unknown;
    try {
      body = text ? (JSON.parse(text) as unknown) : undefined;
    } catch {
      body = undefined;
    }
    return { status: res.status, body, text, headers: res.headers };
  }
}

/** Validates a response body; an unexpected shape is a provisioning failure naming the call. */
export function parseBody<S extends z.ZodType>(schema: S, answer: HttpAnswer, what: string, token: string): z.output<S> {
  const parsed = schema.safeParse(answer.body);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
  throw new StepError(
    ErrorName.ProvisioningError,
    scrub(`${what}: the cloud answered an unexpected body (HTTP ${answer.status})${where}: ${issue?.message ?? 'invalid'}`, token),
  );
}
