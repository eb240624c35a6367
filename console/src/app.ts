import type { DeploymentSummary, HistoryResponse } from '../../core/api.ts';
import type { DeploymentStatus, StepLogLine } from '../../core/model.ts';
import { Api, ApiError, type Session } from './api.ts';
import { dagView, type DagView } from './dag.ts';
import { h, time } from './dom.ts';
import { formatDuration, interval } from './format.ts';
import { ganttView } from './gantt.ts';
import { historyView } from './historyView.ts';
import { clearSession, defaultApiUrl, loadSession, saveSession } from './session.ts';
import { DEPLOYMENT_STATUSES, deploymentTone, FINAL, STATUS_ICON } from './status.ts';
import { stepPanel } from './stepPanel.ts';

/**
 * The console: hash routes so the page works as static files anywhere (#/ the list,
 * #/deployments/ID, #/deployments/ID/steps/STEP). Live by polling the API once a second.
 */

const POLL_MS = 1000;
const main = document.getElementById('main') as HTMLElement;
const announcer = document.getElementById('announce') as HTMLElement;
let session: Session | undefined = loadSession();
let stopPolling: (() => void) | undefined;

window.addEventListener('hashchange', route);
route();

function route(): void {
  stopPolling?.();
  stopPolling = undefined;
  if (!session) return signIn();
  const path = location.hash.replace(/^#/, '').split('?')[0] ?? '/';
  const deployment = /^\/deployments\/([^/]+)(?:\/steps\/([^/]+))?$/.exec(path);
  if (deployment) return void deploymentPage(new Api(session), decodeURIComponent(deployment[1] ?? ''), deployment[2] ? decodeURIComponent(deployment[2]) : undefined);
  listPage(new Api(session));
}

function render(title: string, ...content: (Node | string)[]): void {
  document.title = `${title} · CTD console`;
  main.replaceChildren(...content);
}

function announce(text: string): void {
  announcer.textContent = text;
}

function poll(task: () => Promise<boolean>): void {
  let active = true;
  let timer: number | undefined;
  const tick = async () => {
    if (!active) return;
    let again = true;
    try {
      again = await task();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        clearSession();
        session = undefined;
        return route();
      }
      showError(e);
    }
    if (active && again) timer = window.setTimeout(tick, POLL_MS);
  };
  stopPolling = () => {
    active = false;
    window.clearTimeout(timer);
  };
  void tick();
}

function showError(e: unknown): void {
  const box = document.getElementById('error') ?? main.appendChild(h('p', { id: 'error', class: 'error-box', role: 'alert' }));
  box.textContent = e instanceof Error ? e.message : String(e);
}

function signIn(): void {
  const api = h('input', { id: 'api', name: 'api', type: 'url', required: true, value: defaultApiUrl(location), autocomplete: 'url' });
  const token = h('input', { id: 'token', name: 'token', type: 'password', required: true, autocomplete: 'off' });
  const form = h(
    'form',
    {
      class: 'card signin',
      onsubmit: ((ev: SubmitEvent) => {
        ev.preventDefault();
        session = { apiUrl: api.value.replace(/\/+$/, ''), token: token.value.trim() };
        saveSession(session);
        route();
      }) as EventListener,
    },
    h('h1', {}, 'Sign in'),
    h('p', { class: 'muted' }, 'The console reads the CTD API with your cloud token, as the CLI does. The token stays in this tab.'),
    h('label', { for: 'api' }, 'API endpoint'),
    api,
    h('label', { for: 'token' }, 'Cloud token'),
    token,
    h('p', { class: 'hint' }, 'Local engine: ', h('code', {}, 'ctd local token --tenant default'), ' prints one; ', h('code', {}, 'ctd local console'), ' prints a link that signs you in.'),
    h('button', { type: 'submit', class: 'primary' }, 'Sign in'),
  );
  render('Sign in', form);
  token.focus();
}

function statusBadge(status: DeploymentStatus): HTMLElement {
  const tone = deploymentTone(status);
  return h('span', { class: `badge status-${tone}`, 'data-status': status }, `${STATUS_ICON[tone]} ${status}`);
}

function listPage(api: Api): void {
  const filter = h('select', { id: 'status-filter' }, h('option', { value: '' }, 'all'), ...DEPLOYMENT_STATUSES.map((st) => h('option', { value: st }, st.toLowerCase())));
  const wanted = new URLSearchParams(location.hash.split('?')[1] ?? '').get('status');
  if (wanted) filter.value = wanted;
  const tbody = h('tbody', {});
  const count = h('p', { class: 'muted', 'aria-live': 'polite' });
  let items: DeploymentSummary[] = [];
  const draw = () => {
    const now = Date.now();
    const shown = items.filter((d) => !filter.value || d.status === filter.value);
    count.textContent = `${shown.length} of ${items.length} deployment${items.length === 1 ? '' : 's'}`;
    tbody.replaceChildren(
      ...shown.map((d) =>
        h(
          'tr',
          { 'data-deployment': d.deploymentId },
          h('td', {}, h('a', { href: `#/deployments/${encodeURIComponent(d.deploymentId)}` }, d.name), h('div', { class: 'muted mono' }, d.deploymentId)),
          h('td', {}, statusBadge(d.status)),
          h('td', {}, time(d.createdAt)),
          h('td', { class: 'num' }, formatDuration(interval(d.createdAt, d.endedAt, now))),
        ),
      ),
    );
  };
  filter.addEventListener('change', () => {
    history.replaceState(null, '', filter.value ? `#/?status=${filter.value}` : '#/');
    draw();
  });
  render(
    'Deployments',
    h(
      'section',
      { class: 'card' },
      h('div', { class: 'toolbar' }, h('h1', {}, 'Deployments'), h('div', { class: 'filter' }, h('label', { for: 'status-filter' }, 'Status'), filter)),
      count,
      h('table', { class: 'list' }, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'name'), h('th', { scope: 'col' }, 'status'), h('th', { scope: 'col' }, 'started'), h('th', { scope: 'col', class: 'num' }, 'duration'))), tbody),
    ),
  );
  poll(async () => {
    items = (await api.list()).items;
    draw();
    return true;
  });
}

async function deploymentPage(api: Api, id: string, selected: string | undefined): Promise<void> {
  const header = h('header', { class: 'dep-head' });
  const graphSlot = h('div', { class: 'graph-slot' });
  const ganttSlot = h('section', { class: 'card', 'aria-labelledby': 'timeline-title' });
  const historySlot = h('section', { class: 'card', 'aria-labelledby': 'history-title' });
  const panelSlot = h('div', { class: 'panel-slot' });
  const dialog = confirmDialog(id, async () => {
    const res = await api.cancel(id);
    announce(`deployment ${id} is ${res.status.toLowerCase()}`);
  });
  render(
    id,
    h('nav', { class: 'crumbs', 'aria-label': 'breadcrumb' }, h('a', { href: '#/' }, '← Deployments')),
    header,
    h('div', { class: 'dep-grid' }, h('div', { class: 'dep-main' }, h('section', { class: 'card', 'aria-labelledby': 'graph-title' }, h('h2', { id: 'graph-title' }, 'Workflow'), graphSlot, legend()), ganttSlot), panelSlot),
    historySlot,
    dialog,
  );

  let dag: DagView | undefined;
  let hist: HistoryResponse = { events: [], steps: [] };
  let logs: StepLogLine[] = [];
  let lastStatus: string | undefined;
  let historyFilter = '';
  const drawHistory = (stepIds: string[]) => {
    const hadFocus = document.activeElement?.id === 'history-filter';
    historySlot.replaceChildren(historyView(hist.events, stepIds, historyFilter, (f) => {
      historyFilter = f;
      drawHistory(stepIds);
    }));
    if (hadFocus) (document.getElementById('history-filter') as HTMLElement | null)?.focus();
  };
  const select = (stepId: string | undefined) => {
    location.hash = stepId ? `#/deployments/${encodeURIComponent(id)}/steps/${encodeURIComponent(stepId)}` : `#/deployments/${encodeURIComponent(id)}`;
  };

  poll(async () => {
    const view = await api.get(id);
    const final = FINAL.includes(view.status);
    [hist, logs] = await Promise.all([api.history(id), selected ? api.logs(id, selected).then((r) => r.lines) : Promise.resolve([])]);
    const now = Date.now();
    if (lastStatus && lastStatus !== view.status) announce(`deployment ${view.status.toLowerCase()}`);
    lastStatus = view.status;

    const cancellable = view.status === 'RUNNING' || view.status === 'PENDING';
    header.replaceChildren(
      h('div', {}, h('h1', {}, view.name, ' ', statusBadge(view.status)), h('p', { class: 'muted mono' }, view.deploymentId)),
      h(
        'dl',
        { class: 'facts inline' },
        h('dt', {}, 'started'), h('dd', {}, time(view.createdAt)),
        h('dt', {}, 'duration'), h('dd', {}, formatDuration(interval(view.createdAt, view.endedAt, now))),
        // Pre-start's cost: sandbox time spent up ahead of a release (Fargate bills it), live while it runs.
        ...(view.idleSandboxSeconds ? [h('dt', { title: 'sandboxes started ahead of their step, waiting for its release' }, 'idle sandboxes'), h('dd', { id: 'idle-sandboxes' }, formatDuration(view.idleSandboxSeconds * 1000))] : []),
        ...(view.error ? [h('dt', {}, 'error'), h('dd', { class: 'error-name' }, view.error)] : []),
      ),
      h('div', { class: 'actions' }, cancellable ? h('button', { type: 'button', class: 'danger', id: 'cancel', onclick: () => dialog.showModal() }, 'Cancel deployment…') : ''),
      view.cause ? h('p', { class: `cause-line status-${deploymentTone(view.status)}` }, view.cause) : '',
      // ECS refused one of its sandboxes: no more starts ahead, so later steps wait for a whole start at their release (the CLI's `ahead:` line).
      view.prestartHalted ? h('p', { class: 'halt-line', id: 'prestart-halted' }, h('strong', {}, 'Started ahead: '), `halted, steps start at their release: ${view.prestartHalted}`) : '',
    );

    if (!dag) {
      dag = dagView(view.steps, (stepId) => select(stepId));
      graphSlot.replaceChildren(dag.element);
    }
    dag.update(view.steps);

    ganttSlot.replaceChildren(h('h2', { id: 'timeline-title' }, 'Timeline'), ganttView(view, hist.steps, now, (stepId) => select(stepId)));

    const step = selected ? view.steps.find((st) => st.stepId === selected) : undefined;
    const focusedInPanel = panelSlot.contains(document.activeElement);
    panelSlot.replaceChildren(
      step
        ? stepPanel({ view, step, timeline: hist.steps.find((t) => t.stepId === step.stepId), logs, events: hist.events, now, onClose: () => select(undefined) })
        : h('aside', { class: 'panel panel-empty' }, h('p', { class: 'muted' }, 'Select a step in the graph or the timeline to see its attempts, errors and output.')),
    );
    if (focusedInPanel) (panelSlot.querySelector('.close') as HTMLElement | null)?.focus();

    drawHistory(view.steps.map((st) => st.stepId));
    // Stop polling once the deployment has ended and the last history is in.
    return !final;
  });
}

function legend(): HTMLElement {
  const statuses = ['waiting', 'running', 'succeeded', 'failed', 'aborted', 'skipped', 'cancelled'] as const;
  return h('ul', { class: 'legend-list', 'aria-label': 'status colours' }, ...statuses.map((st) => h('li', {}, h('span', { class: `swatch status-${st}`, 'aria-hidden': 'true' }, STATUS_ICON[st]), st)));
}

function confirmDialog(id: string, onConfirm: () => Promise<void>): HTMLDialogElement {
  const error = h('p', { class: 'error-box', role: 'alert', hidden: true });
  const dialog = h(
    'dialog',
    { class: 'confirm', 'aria-labelledby': 'confirm-title' },
    h('h2', { id: 'confirm-title' }, 'Cancel this deployment?'),
    h('p', {}, 'Running steps are stopped and steps not yet started are skipped. The bastion is closed and the secrets are deleted, as at every end. This cannot be undone.'),
    h('p', { class: 'mono muted' }, id),
    error,
    h(
      'form',
      { method: 'dialog', class: 'dialog-actions' },
      h('button', { type: 'submit', value: 'keep', autofocus: true }, 'Keep running'),
      h(
        'button',
        {
          type: 'button',
          class: 'danger',
          id: 'confirm-cancel',
          onclick: async () => {
            try {
              await onConfirm();
              dialog.close();
            } catch (e) {
              error.hidden = false;
              error.textContent = e instanceof Error ? e.message : String(e);
            }
          },
        },
        'Cancel deployment',
      ),
    ),
  );
  return dialog;
}
