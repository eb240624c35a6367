import { ErrorName, StepError } from '../../core/errors.ts';

/** Socket failures that mean "the API is not there right now": retried like a 502. */
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
  'UND_ERR_SOCKET', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
]);
const UNREACHABLE_STATUSES = new Set([502, 503, 504]);
/** OTC's gateway says this (as an HTML 502) when the service behind it is down. */
const BACKEND_UNREACHABLE = /the backend server is unreachable/i;
const MAX_MESSAGE_CHARS = 500;

/** The message a user reads when the cloud refuses the token; it has no retry in the error table. */
export const TOKEN_REFUSED = 'the cloud token was refused (expired or revoked)';

/**
 * The readable text of an error body. JSON bodies of OpenStack carry the message in
 * `NeutronError.message`, `<faultName>.message` (Nova), `error.message` (Keystone) or `message`;
 * HTML pages (gateways, OTC's 502) are reduced to their title and headings, as openstacksdk does.
 */
export function bodyMessage(text: string): string {
  const trimmed = text.trim();
  if (!trimmed) return '';
  try {
    const found = jsonMessage(JSON.parse(trimmed) as unknown);
    if (found) return clip(found);
  } catch {
    // Not JSON: HTML or plain text.
  }
  if (/^<(!doctype|html|head|body|\?xml)/i.test(trimmed) || /<\/(title|h\d|p|body)>/i.test(trimmed)) return clip(htmlText(trimmed));
  return clip(trimmed.replace(/\s+/g, ' '));
}

function jsonMessage(body: unknown): string | undefined {
  if (typeof body === 'string') return body;
  if (typeof body !== 'object' || body === null) return undefined;
  const record = body as Record<string, unknown>;
  for (const key of ['message', 'faultstring', 'title']) {
    if (typeof record[key] === 'string') return record[key];
  }
  // {"NeutronError": {...}}, {"forbidden": {...}}, {"error": {...}}, {"badRequest": {...}}
  for (const value of Object.values(record)) {
    if (typeof value === 'object' && value !== null && typeof (value as Record<string, unknown>).message === 'string') {
      const inner = value as Record<string, unknown>;
      return typeof inner.type === 'string' && inner.type ? `${inner.type}: ${inner.message as string}` : (inner.message as string);
    }
  }
  return undefined;
}

/** Title and headings of an HTML page, else all its text; entities decoded, whitespace collapsed. */
export function htmlText(html: string): string {
  const pick = (re: RegExp) => [...html.matchAll(re)].map((m) => clean(m[1] ?? '')).filter(Boolean);
  const parts = [...pick(/<title[^>]*>([\s\S]*?)<\/title>/gi), ...pick(/<h[1-3][^>]*>([\s\S]*?)<\/h[1-3]>/gi)];
  const unique = [...new Set(parts)];
  if (unique.length > 0) return unique.join(' — ');
  return clean(html.replace(/<(script|style)[\s\S]*?<\/\1>/gi, ' '));
}

function clean(fragment: string): string {
  return fragment
    .replace(/<[^>]*>/g, ' ')
    .replace(/&nbsp;/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&#39;/g, "'")
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ')
    .trim();
}

function clip(text: string): string {
  return text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS)}…` : text;
}

/** Replaces every occurrence of the token; a cloud that echoes it back must not leak it into a Cause. */
export function scrub(text: string, token: string): string {
  return token ? text.split(token).join('[token]') : text;
}

/**
 * The error table for an HTTP answer (docs/OPENSTACK.md, "Error mapping"): 502/503/504 or OTC's
 * "backend server is unreachable" → Ctd.BackendUnreachable; 401 → fails at once (Ctd.StepFailed,
 * the table has no retry for a dead token); anything else → Ctd.ProvisioningError with the cloud's
 * own message (quota messages included).
 */
export function errorForStatus(status: number, body: string, what: string, token: string): StepError {
  const message = scrub(bodyMessage(body), token);
  const detail = message ? `HTTP ${status}: ${message}` : `HTTP ${status}`;
  if (status === 401) return new StepError(ErrorName.StepFailed, `${TOKEN_REFUSED} while ${what} (${detail})`);
  if (UNREACHABLE_STATUSES.has(status) || BACKEND_UNREACHABLE.test(message)) {
    return new StepError(ErrorName.BackendUnreachable, `The backend server is unreachable (${what}: ${detail})`);
  }
  return new StepError(ErrorName.ProvisioningError, `${what} failed: ${detail}`);
}

/** The error table for a request that got no answer (refused, reset, timed out). */
export function errorForNetworkFailure(e: unknown, what: string, token: string): StepError {
  const code = networkCode(e);
  const reason = code ?? (e instanceof Error ? (e.name === 'TimeoutError' ? 'timed out' : e.message) : String(e));
  const detail = scrub(reason, token);
  if (code === undefined || UNREACHABLE_CODES.has(code)) {
    return new StepError(ErrorName.BackendUnreachable, `The backend server is unreachable (${what}: ${detail})`);
  }
  return new StepError(ErrorName.ProvisioningError, `${what} failed: ${detail}`);
}

/** The code of a fetch failure (undici wraps the socket error in `cause`, sometimes twice). */
function networkCode(e: unknown): string | undefined {
  const direct = (e as { code?: unknown } | null)?.code;
  if (typeof direct === 'string') return direct;
  const cause = (e as { cause?: { code?: string; cause?: { code?: string } } } | null)?.cause;
  return cause?.code ?? cause?.cause?.code;
}
