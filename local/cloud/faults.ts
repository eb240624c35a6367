/**
 * Test-only fault injection: the next `times` requests matching a method and a path pattern
 * answer `status` with `{message}` — how the tests drive the error table end to end (a 503
 * "The backend server is unreachable" must surface as Ctd.BackendUnreachable).
 */
export interface FaultSpec {
  /** HTTP method, or "*" for any. */
  method: string;
  /** A regular expression matched against the request path. */
  pathPattern: string;
  status: number;
  times: number;
  message: string;
}

interface ArmedFault {
  method: string;
  pattern: RegExp;
  status: number;
  remaining: number;
  message: string;
}

export class FaultInjector {
  private faults: ArmedFault[] = [];

  add(spec: FaultSpec): void {
    if (!Number.isInteger(spec.status) || spec.status < 400 || spec.status > 599) {
      throw new Error('status must be an HTTP error status (400–599)');
    }
    this.faults.push({
      method: (spec.method || '*').toUpperCase(),
      pattern: new RegExp(spec.pathPattern),
      status: spec.status,
      remaining: Math.max(1, Math.floor(spec.times || 1)),
      message: spec.message || 'injected fault',
    });
  }

  /** Consumes and returns the first fault matching the request, if any. */
  take(method: string, path: string): { status: number; message: string } | undefined {
    const fault = this.faults.find((f) => (f.method === '*' || f.method === method) && f.pattern.test(path));
    if (!fault) return undefined;
    fault.remaining -= 1;
    if (fault.remaining <= 0) this.faults = this.faults.filter((f) => f !== fault);
    return { status: fault.status, message: fault.message };
  }

  clear(): void {
    this.faults = [];
  }
}
