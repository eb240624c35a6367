/**
 * Test-only fault injection: the next `times` requests matching a method and a path pattern
 * answer `status` with `{message}`, or with an HTML error page like Open Telekom Cloud's
 * "The backend server is unreachable" (`html: true`) — how the tests drive the error table end
 * to end (a 502 must surface as Ctd.BackendUnreachable).
 */
export interface FaultSpec {
  /** HTTP method, or "*" for any. */
  method: string;
  /** A regular expression matched against the request path (e.g. `^/network/v2\.0/security-group-rules`). */
  pathPattern: string;
  status: number;
  times: number;
  message: string;
  /** Answer an HTML page (`text/html`) instead of JSON. */
  html?: boolean;
}

export interface FaultAnswer {
  status: number;
  contentType: string;
  body: string;
}

interface ArmedFault {
  method: string;
  pattern: RegExp;
  status: number;
  remaining: number;
  message: string;
  html: boolean;
}

const escapeHtml = (s: string) => s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

export class FaultInjector {
  private faults: ArmedFault[] = [];

  add(spec: FaultSpec): void {
    if (!Number.isInteger(spec.status) || spec.status < 400 || spec.status > 599) {
      throw new Error('status must be an HTTP error status (400–599)');
    }
    if (typeof spec.pathPattern !== 'string') throw new Error('pathPattern must be a regular expression string');
    this.faults.push({
      method: (spec.method || '*').toUpperCase(),
      pattern: new RegExp(spec.pathPattern),
      status: spec.status,
      remaining: Math.max(1, Math.floor(spec.times || 1)),
      message: spec.message || 'injected fault',
      html: spec.html === true,
    });
  }

  /** Consumes and returns the first fault matching the request, if any. */
  take(method: string, path: string): FaultAnswer | undefined {
    const fault = this.faults.find((f) => (f.method === '*' || f.method === method) && f.pattern.test(path));
    if (!fault) return undefined;
    fault.remaining -= 1;
    if (fault.remaining <= 0) this.faults = this.faults.filter((f) => f !== fault);
    if (fault.html) {
      const text = escapeHtml(fault.message);
      return {
        status: fault.status,
        contentType: 'text/html',
        body: `<html>\r\n<head><title>${fault.status} Bad Gateway</title></head>\r\n<body>\r\n<center><h1>${text}</h1></center>\r\n</body>\r\n</html>\r\n`,
      };
    }
    return { status: fault.status, contentType: 'application/json', body: JSON.stringify({ message: fault.message }) };
  }

  clear(): void {
    this.faults = [];
  }
}
