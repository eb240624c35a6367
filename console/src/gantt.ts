import type { DeploymentView, StepView } from '../../core/api.ts';
import type { AttemptTimeline, StepTimeline } from '../../core/history.ts';
import type { StepStatus } from '../../core/model.ts';
import { h } from './dom.ts';
import { formatDuration } from './format.ts';

/**
 * The steps on one time axis: waits for dependencies (thin), every sandbox attempt as its own
 * bar (retries apart, the gap between them is the retry wait), the grace period as a band across
 * all rows, and the moment of a cancel as a line.
 */
export function ganttView(view: DeploymentView, timelines: StepTimeline[], now: number, onSelect: (stepId: string) => void): HTMLElement {
  const start = Date.parse(view.createdAt);
  const end = Math.max(view.endedAt ? Date.parse(view.endedAt) : now, start + 1000);
  const span = end - start;
  const pct = (iso: string | undefined, fallback = end) => (((iso ? Date.parse(iso) : fallback) - start) / span) * 100;
  const byStep = new Map(timelines.map((t) => [t.stepId, t]));

  const grace = timelines.find((t) => t.grace)?.grace ?? (view.graceStartedAt ? { from: view.graceStartedAt } : undefined);
  const overlays: HTMLElement[] = [];
  if (grace) {
    const left = pct(grace.from);
    overlays.push(
      h('div', { class: 'gantt-grace', style: `left:${left}%;width:${Math.max(0.4, pct(grace.until) - left)}%`, title: `grace period ${formatDuration(Date.parse(grace.until ?? new Date(end).toISOString()) - Date.parse(grace.from))}` },
        h('span', {}, 'grace period')),
    );
  }
  if (view.cancelledAt) {
    overlays.push(h('div', { class: 'gantt-cancel', style: `left:${pct(view.cancelledAt)}%`, title: `cancelled at ${view.cancelledAt}` }, h('span', {}, 'cancel')));
  }

  const rows = view.steps.map((step) => {
    const t = byStep.get(step.stepId);
    const bars: HTMLElement[] = [];
    if (t?.waiting) {
      const left = pct(t.waiting.from);
      bars.push(h('div', { class: 'bar bar-wait', style: `left:${left}%;width:${Math.max(0.2, pct(t.waiting.until) - left)}%`, title: `waited for dependencies ${span ? formatDuration(ms(t.waiting.from, t.waiting.until, end)) : ''}` }));
    }
    const attempts = t?.attempts.length ? t.attempts : fallbackAttempt(step);
    attempts.forEach((a, i) => {
      const last = i === attempts.length - 1;
      const tone = last ? step.status : a.outcome === 'succeeded' ? 'succeeded' : 'failed';
      const left = pct(a.startedAt);
      const width = Math.max(0.4, pct(a.endedAt) - left);
      const label = `attempt ${a.attempt}: ${tone}${a.error ? ` (${a.error})` : ''}, ${formatDuration(ms(a.startedAt, a.endedAt, end))}${a.retryWaitSeconds !== undefined ? `; retried after ${a.retryWaitSeconds.toFixed(1)} s` : ''}`;
      bars.push(h('div', { class: `bar status-${tone}`, style: `left:${left}%;width:${width}%`, title: label, 'data-attempt': a.attempt }, attempts.length > 1 ? `#${a.attempt}` : ''));
    });
    return h(
      'div',
      { class: 'gantt-row', role: 'row' },
      h('div', { class: 'gantt-label', role: 'rowheader' }, h('button', { type: 'button', class: 'link', onclick: () => onSelect(step.stepId) }, step.stepId)),
      h('div', { class: 'gantt-track', role: 'cell', 'aria-label': `${step.stepId}: ${attempts.length} attempt${attempts.length === 1 ? '' : 's'}, ${step.status}` }, ...bars),
    );
  });

  const ticks = axisTicks(span).map((t) => h('span', { class: 'tick', style: `left:${(t / span) * 100}%` }, t === 0 ? '0 s' : formatDuration(t)));
  return h(
    'div',
    { class: 'gantt', role: 'table', 'aria-label': 'timeline of the steps' },
    h('div', { class: 'gantt-row gantt-axis', role: 'row' }, h('div', { class: 'gantt-label', role: 'columnheader' }, 'step'), h('div', { class: 'gantt-track', role: 'columnheader' }, ...ticks)),
    h('div', { class: 'gantt-body' }, ...rows, h('div', { class: 'gantt-overlays', 'aria-hidden': 'true' }, ...overlays)),
    h('p', { class: 'legend' }, 'Thin grey: waiting for dependencies · each bar: one sandbox attempt (retries are separate bars) · amber band: grace period after the first failure · dashed line: cancel'),
  );
}

function ms(from: string, until: string | undefined, end: number): number {
  return (until ? Date.parse(until) : end) - Date.parse(from);
}

/** Before the history arrives (or for a step the engine alone knows), the step's own times. */
function fallbackAttempt(step: StepView): AttemptTimeline[] {
  if (!step.startedAt) return [];
  const outcome: Record<StepStatus, AttemptTimeline['outcome']> = {
    waiting: 'running', running: 'running', succeeded: 'succeeded', failed: 'failed', aborted: 'aborted', skipped: 'aborted', cancelled: 'aborted',
  };
  return [{ attempt: step.attempt || 1, startedAt: step.startedAt, ...(step.endedAt ? { endedAt: step.endedAt } : {}), outcome: outcome[step.status] }];
}

function axisTicks(span: number): number[] {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600].map((x) => x * 1000);
  const every = steps.find((x) => span / x <= 8) ?? 3_600_000;
  const out: number[] = [];
  for (let t = 0; t <= span; t += every) out.push(t);
  return out;
}
