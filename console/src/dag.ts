import { Graph, layout } from '@dagrejs/dagre';
import type { StepView } from '../../core/api.ts';
import { h, s } from './dom.ts';
import { STATUS_ICON } from './status.ts';

/**
 * The workflow as a graph laid out by dagre, framed by the bastion steps: bastion-open above it
 * (everything runs inside the opened access), bastion-close below. Built once per deployment;
 * `update` only recolours, so keyboard focus survives every poll.
 */

const NODE_W = 184;
const NODE_H = 56;

export interface DagView {
  element: HTMLElement;
  update(steps: StepView[]): void;
}

export function dagView(steps: StepView[], onSelect: (stepId: string) => void): DagView {
  const workflow = steps.filter((st) => !st.system);
  const g = new Graph();
  g.setGraph({ rankdir: 'LR', nodesep: 22, ranksep: 56, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const st of workflow) g.setNode(st.stepId, { width: NODE_W, height: NODE_H });
  for (const st of workflow) for (const dep of st.dependsOn) g.setEdge(dep, st.stepId);
  layout(g);
  const { width = 0, height = 0 } = g.graph();

  const edges = g.edges().map((e) => {
    const points: { x: number; y: number }[] = g.edge(e).points ?? [];
    const d = points.map((p, i) => `${i === 0 ? 'M' : 'L'}${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(' ');
    return s('path', { class: 'edge', d, 'data-from': e.v, 'data-to': e.w, 'marker-end': 'url(#arrow)' });
  });

  const nodes = new Map<string, { g: SVGElement; status: SVGElement; icon: SVGElement }>();
  const nodeEls = workflow.map((st) => {
    const n = g.node(st.stepId);
    const x = n.x - NODE_W / 2;
    const y = n.y - NODE_H / 2;
    const icon = s('text', { class: 'node-icon', x: x + 16, y: y + 34, 'aria-hidden': 'true' });
    const status = s('text', { class: 'node-status', x: x + 36, y: y + 42 });
    const el = s(
      'g',
      {
        class: 'node',
        role: 'button',
        tabindex: 0,
        'data-step': st.stepId,
        onclick: () => onSelect(st.stepId),
        onkeydown: ((ev: KeyboardEvent) => {
          if (ev.key === 'Enter' || ev.key === ' ') {
            ev.preventDefault();
            onSelect(st.stepId);
          }
        }) as EventListener,
      },
      s('rect', { x, y, width: NODE_W, height: NODE_H, rx: 10 }),
      icon,
      s('text', { class: 'node-id', x: x + 36, y: y + 23 }, truncate(st.stepId, 19)),
      status,
    );
    nodes.set(st.stepId, { g: el, status, icon });
    return el;
  });

  const svg = s(
    'svg',
    { class: 'dag', viewBox: `0 0 ${width} ${height}`, width, height, role: 'group', 'aria-label': 'workflow steps and their dependencies' },
    s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrow' }))),
    ...edges,
    ...nodeEls,
  );

  const chip = (id: string, label: string) => {
    const b = h('button', { class: 'frame-chip', type: 'button', 'data-step': id, onclick: () => onSelect(id) }, label);
    return b;
  };
  const openChip = chip('bastion-open', 'bastion-open');
  const closeChip = chip('bastion-close', 'bastion-close');
  const frame = h(
    'section',
    { class: 'frame', 'aria-label': 'deployment graph' },
    h('div', { class: 'frame-edge frame-top' }, openChip, h('span', { class: 'frame-note' }, 'opens the bastion to the engine — every step runs inside')),
    h('div', { class: 'dag-scroll' }, svg),
    h('div', { class: 'frame-edge frame-bottom' }, closeChip, h('span', { class: 'frame-note' }, 'closes it again, whatever the outcome')),
  );

  const update = (current: StepView[]) => {
    for (const st of current) {
      const label = `${st.stepId}: ${st.status}${st.attempt > 1 ? `, attempt ${st.attempt}` : ''}`;
      if (st.system) {
        const c = st.stepId === 'bastion-open' ? openChip : closeChip;
        c.className = `frame-chip status-${st.status}`;
        c.textContent = `${STATUS_ICON[st.status]} ${st.stepId} · ${st.status}`;
        c.setAttribute('aria-label', `step ${label}`);
        frame.classList.toggle(`frame-${st.stepId}-${st.status}`, true);
        continue;
      }
      const n = nodes.get(st.stepId);
      if (!n) continue;
      n.g.setAttribute('class', `node status-${st.status}`);
      n.g.setAttribute('data-status', st.status);
      n.g.setAttribute('aria-label', `step ${label}`);
      n.icon.textContent = STATUS_ICON[st.status];
      n.status.textContent = `${st.status}${st.attempt > 1 ? ` · try ${st.attempt}` : ''} · ${st.action}`;
    }
    for (const e of edges) {
      const from = current.find((st) => st.stepId === e.getAttribute('data-from'));
      e.setAttribute('class', `edge ${from?.status === 'succeeded' ? 'edge-done' : ''}`);
    }
  };
  update(steps);
  return { element: frame, update };
}

function truncate(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
