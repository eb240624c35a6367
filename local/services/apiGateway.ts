import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import type {
  APIGatewayAuthorizerResult,
  APIGatewayEventIdentity,
  APIGatewayEventRequestContextWithAuthorizer,
  APIGatewayProxyEvent,
  APIGatewayProxyResult,
  APIGatewayRequestAuthorizerEvent,
  Context,
} from 'aws-lambda';
import { BodyTooLargeError, closeServer, listen, readBody } from './httpUtil.ts';
import { matchRoute, policyAllows } from './apiGatewayRouting.ts';

export interface LocalRoute {
  method: string;
  /** API Gateway resource template, e.g. `/deployments/{id}`; `{name+}` is greedy. */
  resource: string;
  handler: (event: APIGatewayProxyEvent, context: Context) => Promise<APIGatewayProxyResult>;
  /** Shown in the Lambda context; derived from method and resource when absent. */
  functionName?: string;
}

export interface LocalApiGatewayOptions {
  port?: number;
  host?: string;
  routes: LocalRoute[];
  authorizer?: (event: APIGatewayRequestAuthorizerEvent) => Promise<APIGatewayAuthorizerResult>;
  /**
   * The authorizer's results TTL: its policy (Allow or Deny) is kept per Authorization header, as
   * API Gateway does; a failure or "Unauthorized" is not kept. Default 0: every request asks.
   */
  authorizerCacheTtlMs?: number;
  /** The gateway response for an authorizer failure (AWS's default: 500 {"message":null}). */
  authorizerFailure?: { status: number; message: string };
  /** Clock of the authorizer cache, injectable for tests. */
  now?: () => number;
  /** API Gateway's integration timeout; past it the client gets 504. Default 29 s, as on AWS. */
  timeoutMs?: number;
  /** Requests outside the API (the engine's web console); answers true when it handled one. */
  site?: (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;
  /** Where handler failures go (the client never sees them); default: stderr, like Lambda's log. */
  onError?: (error: unknown, route: { method: string; resource: string }) => void;
}

export interface LocalApiGateway {
  url: string;
  close(): Promise<void>;
}

const REGION = 'us-east-1';
const ACCOUNT = '000000000000';
const API_ID = 'local';
const STAGE = 'local';
/** API Gateway's payload limit. */
const MAX_BODY_BYTES = 10 * 1024 * 1024;
/** Bound on cached authorizer decisions: the oldest go first, so junk headers cannot grow memory forever. */
const MAX_CACHED_DECISIONS = 10_000;

/** Gateway-generated answers, with AWS's status codes, bodies and error-type header. */
const gatewayErrors = {
  // AWS answers an unknown resource with 403; this project's contract asks for 404.
  noResource: { status: 404, type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' },
  methodNotAllowed: { status: 403, type: 'MissingAuthenticationTokenException', message: 'Missing Authentication Token' },
  unauthorized: { status: 401, type: 'UnauthorizedException', message: 'Unauthorized' },
  authorizerFailed: { status: 500, type: 'AuthorizerConfigurationException', message: null },
  tooLarge: { status: 413, type: 'RequestTooLarge', message: `HTTP content length exceeded ${MAX_BODY_BYTES} bytes.` },
  handlerFailed: { status: 502, type: 'InternalServerErrorException', message: 'Internal server error' },
  timedOut: { status: 504, type: 'IntegrationTimeout', message: 'Endpoint request timed out' },
} as const;

type GatewayError = { status: number; type: string; message: string | null };

function sendGatewayError(res: ServerResponse, requestId: string, error: GatewayError): void {
  res.writeHead(error.status, {
    'content-type': 'application/json',
    'x-amzn-requestid': requestId,
    'x-amzn-errortype': error.type,
  });
  res.end(JSON.stringify({ message: error.message }));
}

/** Header names keep the client's case, as API Gateway passes them; `headers` keeps the last value. */
function headerMaps(req: IncomingMessage): { headers: Record<string, string>; multi: Record<string, string[]> } {
  const headers: Record<string, string> = {};
  const multi: Record<string, string[]> = {};
  for (let i = 0; i + 1 < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] as string;
    const value = req.rawHeaders[i + 1] as string;
    headers[name] = value;
    (multi[name] ??= []).push(value);
  }
  return { headers, multi };
}

function queryMaps(search: URLSearchParams): { single: Record<string, string> | null; multi: Record<string, string[]> | null } {
  const single: Record<string, string> = {};
  const multi: Record<string, string[]> = {};
  for (const [name, value] of search) {
    single[name] = value;
    (multi[name] ??= []).push(value);
  }
  return Object.keys(single).length > 0 ? { single, multi } : { single: null, multi: null };
}

/** Text bodies go through as strings, anything that is not valid UTF-8 as base64. */
function encodeBody(raw: Buffer): { body: string | null; isBase64Encoded: boolean } {
  if (raw.length === 0) return { body: null, isBase64Encoded: false };
  try {
    return { body: new TextDecoder('utf-8', { fatal: true }).decode(raw), isBase64Encoded: false };
  } catch {
    return { body: raw.toString('base64'), isBase64Encoded: true };
  }
}

function lambdaContext(functionName: string, requestId: string, timeoutMs: number): Context {
  const deadline = Date.now() + timeoutMs;
  const noop = (): void => undefined;
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${REGION}:${ACCOUNT}:function:${functionName}`,
    memoryLimitInMB: '512',
    awsRequestId: requestId,
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: `local/[$LATEST]${requestId.replace(/-/g, '')}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: noop,
    fail: noop,
    succeed: noop,
  };
}

function isProxyResult(value: unknown): value is APIGatewayProxyResult {
  return typeof value === 'object' && value !== null && Number.isInteger((value as { statusCode?: unknown }).statusCode);
}

function sendProxyResult(res: ServerResponse, requestId: string, result: APIGatewayProxyResult): void {
  const headers: Record<string, string | string[]> = { 'content-type': 'application/json' };
  for (const [name, values] of Object.entries(result.multiValueHeaders ?? {})) headers[name.toLowerCase()] = values.map(String);
  for (const [name, value] of Object.entries(result.headers ?? {})) headers[name.toLowerCase()] = String(value);
  headers['x-amzn-requestid'] = requestId;
  const body = result.body ?? '';
  res.writeHead(result.statusCode, headers);
  res.end(result.isBase64Encoded ? Buffer.from(body, 'base64') : body);
}

/** Resolves to the handler's result, or to `timedOut` once API Gateway would have given up. */
async function invokeWithTimeout<T>(work: Promise<T>, timeoutMs: number): Promise<T | 'timedOut'> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timedOut'>((resolve) => {
    timer = setTimeout(() => resolve('timedOut'), timeoutMs);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The authorizer behind API Gateway's results cache, keyed by the identity source (the
 * Authorization header). Concurrent first requests with one header share one call.
 */
function cachedAuthorizer(opts: LocalApiGatewayOptions): ((event: APIGatewayRequestAuthorizerEvent, key: string) => Promise<APIGatewayAuthorizerResult>) | undefined {
  const authorize = opts.authorizer;
  if (!authorize) return undefined;
  const ttlMs = opts.authorizerCacheTtlMs ?? 0;
  if (ttlMs <= 0) return (event) => authorize(event);
  const now = opts.now ?? Date.now;
  const cache = new Map<string, { decision: Promise<APIGatewayAuthorizerResult>; expires: number }>();
  return (event, key) => {
    const hit = cache.get(key);
    if (hit && hit.expires > now()) return hit.decision;
    cache.delete(key);
    if (cache.size >= MAX_CACHED_DECISIONS) cache.delete(cache.keys().next().value as string);
    const entry = { decision: authorize(event), expires: now() + ttlMs };
    cache.set(key, entry);
    // Only policies are cached: a thrown "Unauthorized" or failure is asked again next time.
    entry.decision.catch(() => {
      if (cache.get(key) === entry) cache.delete(key);
    });
    return entry.decision;
  };
}

async function handleRequest(opts: LocalApiGatewayOptions, authorize: ReturnType<typeof cachedAuthorizer>, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const requestId = randomUUID();
  const url = new URL(req.url ?? '/', 'http://localhost');
  const method = (req.method ?? 'GET').toUpperCase();
  const match = matchRoute(opts.routes, method, url.pathname);
  if (match.kind !== 'matched') {
    req.resume();
    sendGatewayError(res, requestId, gatewayErrors[match.kind]);
    return;
  }
  let raw: Buffer;
  try {
    raw = await readBody(req, MAX_BODY_BYTES);
  } catch (err) {
    if (!(err instanceof BodyTooLargeError)) throw err;
    res.setHeader('connection', 'close');
    sendGatewayError(res, requestId, gatewayErrors.tooLarge);
    return;
  }

  const { route, pathParameters } = match;
  const { headers, multi: multiValueHeaders } = headerMaps(req);
  const query = queryMaps(url.searchParams);
  const now = Date.now();
  const identity: APIGatewayEventIdentity = {
    accessKey: null,
    accountId: null,
    apiKey: null,
    apiKeyId: null,
    caller: null,
    clientCert: null,
    cognitoAuthenticationProvider: null,
    cognitoAuthenticationType: null,
    cognitoIdentityId: null,
    cognitoIdentityPoolId: null,
    principalOrgId: null,
    sourceIp: req.socket.remoteAddress ?? '127.0.0.1',
    user: null,
    userAgent: req.headers['user-agent'] ?? null,
    userArn: null,
  };
  const requestContext: APIGatewayEventRequestContextWithAuthorizer<undefined> = {
    accountId: ACCOUNT,
    apiId: API_ID,
    authorizer: undefined,
    domainName: req.headers.host ?? 'localhost',
    extendedRequestId: requestId,
    protocol: `HTTP/${req.httpVersion}`,
    httpMethod: method,
    identity,
    path: `/${STAGE}${url.pathname}`,
    stage: STAGE,
    requestId,
    requestTime: new Date(now).toUTCString(),
    requestTimeEpoch: now,
    resourceId: route.resource,
    resourcePath: route.resource,
  };
  const common = {
    resource: route.resource,
    path: url.pathname,
    httpMethod: method,
    headers,
    multiValueHeaders,
    pathParameters,
    queryStringParameters: query.single,
    multiValueQueryStringParameters: query.multi,
    stageVariables: null,
  };

  let authorizer: APIGatewayProxyEvent['requestContext']['authorizer'] = undefined;
  if (authorize) {
    const methodArn = `arn:aws:execute-api:${REGION}:${ACCOUNT}:${API_ID}/${STAGE}/${method}${url.pathname}`;
    let decision: APIGatewayAuthorizerResult;
    try {
      const identitySource = Object.entries(headers).find(([k]) => k.toLowerCase() === 'authorization')?.[1] ?? '';
      decision = await authorize({ type: 'REQUEST', methodArn, ...common, requestContext }, identitySource);
    } catch (err) {
      // Lambda authorizers signal "no valid identity" by failing with exactly 'Unauthorized'.
      const unauthorized = err instanceof Error && err.message === 'Unauthorized';
      const failed = opts.authorizerFailure ? { ...gatewayErrors.authorizerFailed, ...opts.authorizerFailure } : gatewayErrors.authorizerFailed;
      if (!unauthorized) (opts.onError ?? defaultOnError)(err, { method: route.method, resource: 'authorizer' });
      sendGatewayError(res, requestId, unauthorized ? gatewayErrors.unauthorized : failed);
      return;
    }
    if (!policyAllows(decision, methodArn)) {
      // AWS answers an explicit/implicit deny with 403; this project's contract asks for 401.
      sendGatewayError(res, requestId, gatewayErrors.unauthorized);
      return;
    }
    authorizer = { ...(decision.context ?? {}), principalId: decision.principalId, integrationLatency: Date.now() - now };
  }

  const event: APIGatewayProxyEvent = { ...common, ...encodeBody(raw), requestContext: { ...requestContext, authorizer } };
  const timeoutMs = opts.timeoutMs ?? 29_000;
  const functionName = route.functionName ?? `ctd-local-${method}${route.resource}`.replace(/[^A-Za-z0-9_-]+/g, '-').replace(/-+$/, '');
  let result: APIGatewayProxyResult | 'timedOut';
  try {
    result = await invokeWithTimeout(route.handler(event, lambdaContext(functionName, requestId, timeoutMs)), timeoutMs);
  } catch (err) {
    (opts.onError ?? defaultOnError)(err, { method: route.method, resource: route.resource });
    sendGatewayError(res, requestId, gatewayErrors.handlerFailed);
    return;
  }
  if (result === 'timedOut') {
    sendGatewayError(res, requestId, gatewayErrors.timedOut);
  } else if (!isProxyResult(result)) {
    // API Gateway's "Malformed Lambda proxy response".
    (opts.onError ?? defaultOnError)(new Error('malformed proxy result'), { method: route.method, resource: route.resource });
    sendGatewayError(res, requestId, gatewayErrors.handlerFailed);
  } else {
    sendProxyResult(res, requestId, result);
  }
}

function defaultOnError(error: unknown, route: { method: string; resource: string }): void {
  console.error(`[local api gateway] ${route.method} ${route.resource} failed:`, error);
}

/**
 * API Gateway (REST, Lambda proxy integration) for the embedded engine: the same API handlers
 * and authorizer run in-process behind it, with the events and error answers they get on AWS.
 */
export async function startLocalApiGateway(opts: LocalApiGatewayOptions): Promise<LocalApiGateway> {
  const authorize = cachedAuthorizer(opts);
  const server = createServer((req, res) => {
    const site = opts.site ?? (async () => false);
    site(req, res).then((handled) => (handled ? undefined : handleRequest(opts, authorize, req, res))).catch(() => {
      if (!res.headersSent) sendGatewayError(res, 'unknown', gatewayErrors.handlerFailed);
      else res.destroy();
    });
  });
  const url = await listen(server, opts.port ?? 0, opts.host ?? '127.0.0.1');
  let closing: Promise<void> | undefined;
  return { url, close: () => (closing ??= closeServer(server)) };
}
