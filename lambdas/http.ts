import type middy from '@middy/core';
import type { APIGatewayProxyEvent, APIGatewayProxyResult } from 'aws-lambda';
import type { ErrorResponse } from '../core/api.ts';
import { ConflictError, NotFoundError, UnauthorizedError, ValidationError } from '../core/errors.ts';

/** HTTP plumbing shared by the api handlers: JSON answers and the error → status mapping. */

export function json(statusCode: number, body: unknown): APIGatewayProxyResult {
  return { statusCode, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

/** The tenant the authorizer resolved; API Gateway passes it in the request context. */
export function tenantOf(event: APIGatewayProxyEvent): string {
  const tenantId: unknown = event.requestContext.authorizer?.tenantId;
  if (typeof tenantId !== 'string' || !tenantId) throw new UnauthorizedError('no tenant in the request context');
  return tenantId;
}

export function bearerToken(event: APIGatewayProxyEvent): string {
  const header = Object.entries(event.headers ?? {}).find(([k]) => k.toLowerCase() === 'authorization')?.[1];
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? '');
  if (!match?.[1]) throw new UnauthorizedError('missing bearer token');
  return match[1];
}

export function header(event: APIGatewayProxyEvent, name: string): string | undefined {
  return Object.entries(event.headers ?? {}).find(([k]) => k.toLowerCase() === name.toLowerCase())?.[1] ?? undefined;
}

export function pathParam(event: APIGatewayProxyEvent, name: string): string {
  const value = event.pathParameters?.[name];
  if (!value) throw new ValidationError(`${name}: missing from the path`);
  return value;
}

/** Offset of the first byte that breaks UTF-8 (decoded byte by byte in stream mode). */
function firstInvalidUtf8(bytes: Buffer): number {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  for (let i = 0; i < bytes.length; i++) {
    try {
      decoder.decode(bytes.subarray(i, i + 1), { stream: true });
    } catch {
      return i;
    }
  }
  return bytes.length;
}

export function jsonBody(event: APIGatewayProxyEvent): unknown {
  let text = event.body ?? '';
  if (event.isBase64Encoded) {
    // Never decode loosely: a replacement character stored in place of the user's bytes is silent corruption.
    const bytes = Buffer.from(text, 'base64');
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch {
      throw new ValidationError(`body: not valid UTF-8 (first bad byte at offset ${firstInvalidUtf8(bytes)}); send binary files as { "content": "<base64>", "encoding": "base64" }`);
    }
  }
  if (!text.trim()) throw new ValidationError('body: a deployment document is required');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ValidationError(`body: not valid JSON (${(e as Error).message})`);
  }
}

export function errorResponse(error: unknown): APIGatewayProxyResult {
  const body = (message: string, extra: Partial<ErrorResponse> = {}): ErrorResponse => ({ message, ...extra });
  if (error instanceof ValidationError) return json(400, body(error.message, { issues: [...error.issues] }));
  if (error instanceof UnauthorizedError) return json(401, body('Unauthorized'));
  if (error instanceof NotFoundError) return json(404, body(error.message));
  if (error instanceof ConflictError) return json(409, body(error.message));
  // Anything else is ours: say so without leaking internals.
  return json(500, body('internal error'));
}

/** middy middleware: known errors become their status; unknown ones are logged as errors and become 500. */
export function httpErrors(log: (message: string, details?: Record<string, unknown>) => void): middy.MiddlewareObj<APIGatewayProxyEvent, APIGatewayProxyResult> {
  return {
    onError: async (request) => {
      const error = request.error;
      if (!(error instanceof ValidationError || error instanceof UnauthorizedError || error instanceof NotFoundError || error instanceof ConflictError)) {
        // The Error itself, under `error`: Powertools logs it at ERROR with name, message and stack
        // (a `message` key would be dropped as reserved, leaving a 500 with only the error's name).
        log('request failed', { error });
      }
      request.response = errorResponse(error);
    },
  };
}
