import type { StepView } from '../core/api.ts';
import type { StepStatus } from '../core/model.ts';
import { formatInterval } from './format.ts';

/**
 * Live progress of `ctd deploy --wait`, as a pure projection of the API's step views onto text.
 *
 * Why not listr2: listr2 renders tasks *this process runs* (each a promise it awaits). Here the
 * steps run in the engine and we only observe snapshots by polling; statuses such as skipped,
 * aborted or cancelled and step lists known only after submit would have to be faked through
 * task promises. A pure `StepView[] → lines` function plus a few ANSI cursor moves
 * (see {@link TtyRenderer}) is smaller, fully unit-testable, and has the same look.
 */

/** The word shown for a step: the API's status, except a running retry shows its attempt. */
export function stepLabel(step: Pick<StepView, 'status' | 'attempt'>): string {
  if (step.status === 'running' && step.attempt > 1) return `retrying ${step.attempt}`;
  return step.status;
}

const SYMBOLS: Record<StepStatus, string> = {
  waiting: '·',
  running: '▸',
  succeeded: '✔',
  failed: '✖',
  skipped: '↷',
  aborted: '✖',
  cancelled: '⊘',
};

/** One line per step, aligned: symbol, step id, action, label, duration and the error when any. */
export function renderSteps(steps: readonly StepView[], now: number): string[] {
  const idWidth = Math.max(4, ...steps.map((s) => s.stepId.length));
  const actionWidth = Math.max(6, ...steps.map((s) => s.action.length));
  const labelWidth = Math.max(...steps.map((s) => stepLabel(s).length), 9);
  return steps.map((step) => renderStepLine(step, now, idWidth, actionWidth, labelWidth));
}

function renderStepLine(step: StepView, now: number, idWidth = 0, actionWidth = 0, labelWidth = 0): string {
  const duration = step.startedAt ? formatInterval(step.startedAt, step.endedAt, now) : '';
  const parts = [
    SYMBOLS[step.status] ?? '?',
    step.stepId.padEnd(idWidth),
    step.action.padEnd(actionWidth),
    stepLabel(step).padEnd(labelWidth),
    duration,
  ];
  let line = parts.join(' ').trimEnd();
  if (step.error) line += `  ${step.error}`;
  return line;
}

/**
 * For non-TTY output (CI logs, pipes): the lines for steps whose label changed since the last
 * snapshot, so the log reads as a sequence of events with no redraw noise.
 * `seen` maps stepId → last label printed and is updated in place.
 */
export function changedStepLines(steps: readonly StepView[], seen: Map<string, string>, now: number): string[] {
  const lines: string[] = [];
  for (const step of steps) {
    const label = stepLabel(step);
    if (seen.get(step.stepId) === label) continue;
    seen.set(step.stepId, label);
    lines.push(renderStepLine(step, now));
  }
  return lines;
}

/** Minimal output sink so the renderer can be driven by tests without a terminal. */
export interface TextSink {
  write(text: string): unknown;
}

/**
 * Redraws a block of lines in place on a terminal: moves the cursor up over the previous
 * block and clears to the end of the screen before writing the new one.
 */
export class TtyRenderer {
  private previousLineCount = 0;

  /** `columns`: the terminal width; lines are cut to it because a wrapped line would break the cursor arithmetic. */
  constructor(
    private readonly out: TextSink,
    private readonly columns = 0,
  ) {}

  draw(lines: readonly string[]): void {
    const up = this.previousLineCount > 0 ? `\x1b[${this.previousLineCount}F` : '';
    const fit = (l: string) => (this.columns > 1 && l.length >= this.columns ? `${l.slice(0, this.columns - 2)}…` : l);
    this.out.write(`${up}\x1b[0J${lines.map((l) => `${fit(l)}\n`).join('')}`);
    this.previousLineCount = lines.length;
  }
}
