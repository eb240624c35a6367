import type { AttributedEvent } from '../../core/history.ts';
import { h } from './dom.ts';

/** The execution's events, each with the workflow step it belongs to; filterable by step. */
export function historyView(events: AttributedEvent[], stepIds: string[], filter: string, onFilter: (stepId: string) => void): HTMLElement {
  const start = events[0] ? Date.parse(events[0].timestamp) : 0;
  const shown = events.filter((e) => !filter || (filter === '-' ? !e.stepId : e.stepId === filter));
  const select = h('select', { id: 'history-filter', onchange: ((ev: Event) => onFilter((ev.target as HTMLSelectElement).value)) as EventListener },
    h('option', { value: '' }, 'all steps'), h('option', { value: '-' }, 'engine only'), ...stepIds.map((id) => h('option', { value: id }, id)));
  select.value = filter;
  return h(
    'div',
    {},
    h('div', { class: 'toolbar' }, h('h2', { id: 'history-title' }, 'History ', h('span', { class: 'muted' }, `(${events.length} events)`)), h('div', { class: 'filter' }, h('label', { for: 'history-filter' }, 'Step'), select)),
    h(
      'div',
      { class: 'history-scroll', tabindex: 0, role: 'region', 'aria-label': 'event history' },
      h(
        'table',
        { class: 'history' },
        h('thead', {}, h('tr', {}, h('th', { scope: 'col', class: 'num' }, '#'), h('th', { scope: 'col', class: 'num' }, '+time'), h('th', { scope: 'col' }, 'step'), h('th', { scope: 'col' }, 'event'), h('th', { scope: 'col' }, 'detail'))),
        h(
          'tbody',
          {},
          ...shown.map((e) => {
            const d = detail(e);
            return h(
              'tr',
              { class: e.type.endsWith('Failed') || e.type.endsWith('TimedOut') ? 'row-failed' : '', 'data-step': e.stepId ?? '' },
              h('td', { class: 'num' }, String(e.id)),
              h('td', { class: 'num' }, `${((Date.parse(e.timestamp) - start) / 1000).toFixed(2)} s`),
              h('td', {}, e.stepId ? h('span', { class: 'step-tag' }, e.stepId) : h('span', { class: 'muted' }, 'engine')),
              h('td', { class: 'mono' }, e.type),
              h('td', {}, d),
            );
          }),
        ),
      ),
    ),
  );
}

function detail(event: AttributedEvent): string {
  for (const [key, value] of Object.entries(event)) {
    if (!key.endsWith('EventDetails') || typeof value !== 'object' || value === null) continue;
    const d = value as Record<string, unknown>;
    if (typeof d.error === 'string') return `${d.error}${typeof d.cause === 'string' ? `: ${d.cause}` : ''}`;
    if (typeof d.name === 'string') return d.name;
    if (typeof d.resource === 'string') return `${String(d.resourceType ?? '')} ${d.resource}`;
  }
  return '';
}
