import type { TokenRecord } from './state.ts';

/**
 * An OpenStack error answer: the status plus the body in the service's own shape (Nova's
 * `{"itemNotFound": {…}}`, Neutron's `{"NeutronError": {…}}`, Keystone's `{"error": {…}}`).
 * Glance answers a missing image with an HTML page, as the real one does.
 */
export class OsError extends Error {
  override readonly name = 'OsError';
  constructor(
    readonly status: number,
    readonly body: unknown,
    message: string,
    readonly contentType = 'application/json',
  ) {
    super(message);
  }
}

const NOVA_KINDS: Record<number, string> = {
  400: 'badRequest',
  403: 'forbidden',
  404: 'itemNotFound',
  406: 'notAcceptable',
  409: 'conflictingRequest',
  413: 'overLimit',
};

export const novaError = (status: number, message: string): OsError =>
  new OsError(status, { [NOVA_KINDS[status] ?? 'computeFault']: { code: status, message } }, message);

export const neutronError = (status: number, type: string, message: string): OsError =>
  new OsError(status, { NeutronError: { type, message, detail: '' } }, message);

const KEYSTONE_TITLES: Record<number, string> = { 400: 'Bad Request', 401: 'Unauthorized', 403: 'Forbidden', 404: 'Not Found' };

export const keystoneError = (status: number, message: string): OsError =>
  new OsError(status, { error: { code: status, message, title: KEYSTONE_TITLES[status] ?? 'Error' } }, message);

export const glanceNotFound = (message: string): OsError =>
  new OsError(404, `<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n  ${message}<br /><br />\n\n\n </body>\n</html>`, message, 'text/html; charset=UTF-8');

/** Who is calling: the project of a valid `X-Auth-Token`. */
export interface Caller {
  token: string;
  record: TokenRecord;
}

export interface OsRequest {
  method: string;
  /** The path below the service prefix (`/v2.0/networks`). */
  path: string;
  query: URLSearchParams;
  /** The parsed JSON body ({} when empty). */
  body: Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
  /** Undefined only on routes marked `open`. */
  caller: Caller | undefined;
}

export interface OsReply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface Route {
  method: string;
  pattern: RegExp;
  /** Served without a token (version documents, password auth). */
  open?: boolean;
  handler: (req: OsRequest, params: string[]) => OsReply | Promise<OsReply>;
}

export const reply = (body?: unknown, status = 200, headers?: Record<string, string>): OsReply => ({ status, body, headers });

/** The caller of an authenticated route (the server checked the token before routing). */
export function projectOf(req: OsRequest): string {
  if (!req.caller) throw keystoneError(401, 'The request you have made requires authentication.');
  return req.caller.record.projectId;
}

/** The object under `key` in a request body, e.g. `{"network": {…}}`, or a 400. */
export function member(body: Record<string, unknown>, key: string, error: (message: string) => OsError): Record<string, unknown> {
  const value = body[key];
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw error(`Request body must contain a "${key}" object.`);
  return value as Record<string, unknown>;
}

export const now = (): string => new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
