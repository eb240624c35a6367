/**
 * Plain-text formatting shared by the commands: durations, timestamps and aligned tables.
 * Pure functions, so every command's output is reproducible in tests.
 */

/** Human duration: sub-second in ms, then seconds with one decimal, then m/s and h/m. */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 60_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)}s`;
  const totalSeconds = Math.floor(ms / 1000);
  if (totalSeconds < 3600) {
    return `${Math.floor(totalSeconds / 60)}m${String(totalSeconds % 60).padStart(2, '0')}s`;
  }
  const minutes = Math.floor(totalSeconds / 60);
  return `${Math.floor(minutes / 60)}h${String(minutes % 60).padStart(2, '0')}m`;
}

/**
 * Duration between two ISO timestamps; an open interval (no end) runs until `now`, so a
 * running deployment or step shows how long it has been going. `undefined` when never started.
 */
export function durationBetween(start: string | undefined, end: string | undefined, now: number): number | undefined {
  if (!start) return undefined;
  const from = Date.parse(start);
  const to = end ? Date.parse(end) : now;
  if (Number.isNaN(from) || Number.isNaN(to)) return undefined;
  return Math.max(0, to - from);
}

/** `formatDuration` of an interval, or "-" when it never started. */
export function formatInterval(start: string | undefined, end: string | undefined, now: number): string {
  const ms = durationBetween(start, end, now);
  return ms === undefined ? '-' : formatDuration(ms);
}

/** ISO timestamp as "YYYY-MM-DD HH:MM:SS" (UTC): sortable, fits a table column, no locale surprises. */
export function formatTimestamp(iso: string | undefined): string {
  if (!iso) return '-';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  return new Date(t).toISOString().slice(0, 19).replace('T', ' ');
}

/**
 * Left-aligned columns separated by two spaces, header first. Trailing spaces are trimmed so
 * output diffs and greps cleanly.
 */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    headers
      .map((_, i) => (cells[i] ?? '').padEnd(widths[i] ?? 0))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)];
}

/** Pre-start's cost, when it had one: Fargate time of sandboxes up ahead of their step's release. */
export function formatIdleSandboxes(seconds: number | undefined): string | undefined {
  return seconds ? `${formatDuration(seconds * 1000)} of sandboxes started ahead, waiting for their release` : undefined;
}
