import { ErrorName, StepError } from '../../core/errors.ts';

/** The parts of ansible's `json` stdout callback document the classification reads. */
export interface PlaybookReport {
  plays?: {
    tasks?: {
      task?: { name?: string };
      hosts?: Record<string, HostResult>;
    }[];
  }[];
  stats?: Record<string, HostStats>;
}

interface HostResult {
  failed?: boolean;
  unreachable?: boolean;
  ignore_errors?: boolean;
  msg?: unknown;
  stderr?: unknown;
  rc?: number;
  results?: HostResult[];
}

export interface HostStats {
  ok?: number;
  changed?: number;
  failures?: number;
  unreachable?: number;
  skipped?: number;
  ignored?: number;
  rescued?: number;
}

/** Parses the json callback's document; undefined when ansible died before writing it (parse errors). */
export function parseReport(stdout: string): PlaybookReport | undefined {
  const start = stdout.indexOf('{');
  if (start < 0) return undefined;
  try {
    const doc: unknown = JSON.parse(stdout.slice(start));
    return typeof doc === 'object' && doc !== null ? (doc as PlaybookReport) : undefined;
  } catch {
    return undefined;
  }
}

function firstLine(value: unknown): string {
  const text = typeof value === 'string' ? value : value === undefined ? '' : JSON.stringify(value);
  return (text.trim().split('\n')[0] ?? '').slice(0, 300);
}

function messageOf(result: HostResult): string {
  const item = result.results?.find((r) => r.failed);
  const source = item ?? result;
  const stderr = firstLine(source.stderr);
  // A command's own stderr says more than ansible's generic "non-zero return code".
  if (stderr && (source.msg === undefined || source.msg === 'non-zero return code')) {
    return source.rc === undefined ? stderr : `${stderr} (rc ${source.rc})`;
  }
  return firstLine(source.msg) || stderr || 'no message';
}

/** The task that stopped a host: the last unignored failure of a host whose stats count failures. */
function failingTask(report: PlaybookReport): { task: string; host: string; msg: string } | undefined {
  const failedHosts = Object.entries(report.stats ?? {})
    .filter(([, s]) => (s.failures ?? 0) > 0)
    .map(([h]) => h);
  for (const host of failedHosts) {
    let found: { task: string; host: string; msg: string } | undefined;
    for (const play of report.plays ?? []) {
      for (const t of play.tasks ?? []) {
        const r = t.hosts?.[host];
        if (r?.failed && !r.unreachable && !r.ignore_errors) found = { task: t.task?.name ?? '?', host, msg: messageOf(r) };
      }
    }
    if (found) return found;
  }
  return undefined;
}

/** ERROR! lines ansible prints on stderr for syntax and parse errors. */
function errorLines(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0 && !l.startsWith('CTD-PROGRESS '));
  const start = lines.findIndex((l) => l.startsWith('ERROR!'));
  return (start >= 0 ? lines.slice(start, start + 3) : lines.slice(-3)).join(' ').slice(0, 500);
}

/**
 * Maps an ansible-playbook outcome to the error table. Exit 4 means "unreachable hosts" *or*
 * "parse error", so Ctd.AnsibleUnreachable (retried once) needs both exit 4 and unreachable
 * hosts in the stats; everything else is Ctd.StepFailed with a message naming the task and host.
 */
export function classifyPlaybookResult(exitCode: number | null, stdout: string, stderr: string): StepError | undefined {
  if (exitCode === 0) return undefined;
  const report = parseReport(stdout);
  if (exitCode === 4 && report) {
    const unreachable = Object.entries(report.stats ?? {})
      .filter(([, s]) => (s.unreachable ?? 0) > 0)
      .map(([h]) => h)
      .sort();
    if (unreachable.length > 0) return new StepError(ErrorName.AnsibleUnreachable, `unreachable: ${unreachable.join(', ')}`);
  }
  const failed = report && failingTask(report);
  if (failed) return new StepError(ErrorName.StepFailed, `task "${failed.task}" failed on ${failed.host}: ${failed.msg}`);
  const detail = errorLines(stderr);
  const how = exitCode === null ? 'was killed' : `exited ${exitCode}`;
  return new StepError(ErrorName.StepFailed, `ansible-playbook ${how}${detail ? `: ${detail}` : ''}`);
}

/** A small per-host summary stored as the step's output. */
export function summarizeStats(report: PlaybookReport | undefined): Record<string, HostStats> {
  const out: Record<string, HostStats> = {};
  for (const [host, s] of Object.entries(report?.stats ?? {})) {
    out[host] = { ok: s.ok ?? 0, changed: s.changed ?? 0, failures: s.failures ?? 0, unreachable: s.unreachable ?? 0 };
  }
  return out;
}
