import { prestartFallbackOutcome, type DeploymentView, type StepView } from '../../core/api.ts';
import type { AttributedEvent, StepTimeline } from '../../core/history.ts';
import type { StepLogLine } from '../../core/model.ts';
import { h, time } from './dom.ts';
import { formatDuration, interval } from './format.ts';
import { errorMeaning, STATUS_ICON } from './status.ts';

/**
 * Everything about one step: status, attempts with their error-table names and retry waits,
 * output grouped host by host (refreshed while it runs), and where to look on AWS.
 */
export function stepPanel(opts: {
  view: DeploymentView;
  step: StepView;
  timeline: StepTimeline | undefined;
  logs: StepLogLine[];
  events: AttributedEvent[];
  now: number;
  onClose: () => void;
}): HTMLElement {
  const { view, step, timeline, logs, now } = opts;
  const meaning = errorMeaning(step.error);
  const attempts = timeline?.attempts ?? [];
  const aws = awsLinks(view);

  const byHost = new Map<string, StepLogLine[]>();
  for (const line of logs) {
    const key = line.host ?? (line.stream === 'engine' ? 'engine' : 'sandbox');
    byHost.set(key, [...(byHost.get(key) ?? []), line]);
  }

  return h(
    'aside',
    { class: 'panel', 'aria-labelledby': 'panel-title', 'data-step': step.stepId },
    h(
      'header',
      { class: 'panel-head' },
      h('h2', { id: 'panel-title' }, h('span', { class: `badge status-${step.status}` }, `${STATUS_ICON[step.status]} ${step.status}`), ' ', step.stepId),
      h('button', { type: 'button', class: 'close', 'aria-label': 'close the step panel', onclick: opts.onClose }, '×'),
    ),
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, 'action'), h('dd', {}, step.system ? `${step.action} (system)` : step.action),
      h('dt', {}, 'depends on'), h('dd', {}, step.dependsOn.length ? step.dependsOn.join(', ') : '–'),
      h('dt', {}, 'started'), h('dd', {}, time(step.startedAt)),
      h('dt', {}, 'duration'), h('dd', {}, formatDuration(interval(step.startedAt, step.endedAt, now))),
      h('dt', {}, 'attempts'), h('dd', {}, String(Math.max(step.attempt, attempts.length))),
      // Started ahead of its release (pre-start): when its sandbox was up, or why the step started one at the release instead.
      ...(step.readyAt ? [h('dt', {}, 'sandbox up'), h('dd', { class: 'sandbox-up' }, time(step.readyAt))] : []),
      ...(step.prestartFailure ? [h('dt', {}, 'started ahead'), h('dd', { class: 'prestart-failure' }, `${step.prestartFailure}; ${prestartFallbackOutcome(step.status)}`)] : []),
    ),
    step.error
      ? h(
          'div',
          { class: `error-box status-${step.status}`, role: 'alert' },
          h('p', {}, h('strong', { class: 'error-name' }, step.error), meaning ? h('span', { class: 'muted' }, ` — ${meaning}`) : ''),
          step.cause ? h('p', { class: 'cause' }, step.cause) : '',
        )
      : '',
    attempts.length
      ? h(
          'section',
          {},
          h('h3', {}, 'Attempts'),
          h(
            'table',
            { class: 'attempts' },
            h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, '#'), h('th', { scope: 'col' }, 'started'), h('th', { scope: 'col' }, 'duration'), h('th', { scope: 'col' }, 'outcome'), h('th', { scope: 'col' }, 'retry wait'))),
            h(
              'tbody',
              {},
              ...attempts.map((a) =>
                h(
                  'tr',
                  {},
                  h('td', {}, String(a.attempt)),
                  h('td', {}, time(a.startedAt)),
                  h('td', {}, formatDuration(interval(a.startedAt, a.endedAt, now))),
                  h('td', {}, a.outcome, a.error ? h('div', { class: 'error-name' }, a.error) : '', a.cause ? h('div', { class: 'cause' }, a.cause) : ''),
                  h('td', {}, a.retryWaitSeconds !== undefined ? `${a.retryWaitSeconds.toFixed(1)} s` : '–'),
                ),
              ),
            ),
          ),
        )
      : '',
    step.output ? h('section', {}, h('h3', {}, 'Result'), h('pre', { class: 'result' }, JSON.stringify(step.output, null, 2))) : '',
    h(
      'section',
      { class: 'output' },
      h('h3', {}, 'Output', step.status === 'running' ? h('span', { class: 'live', 'aria-live': 'polite' }, ' · live') : ''),
      byHost.size === 0
        ? h('p', { class: 'muted' }, step.status === 'waiting' || step.status === 'skipped' ? 'This step has not run.' : 'No output yet.')
        : h(
            'div',
            {},
            ...[...byHost].map(([host, lines]) =>
              h(
                'details',
                { open: true, class: 'host' },
                h('summary', {}, host === 'engine' ? 'engine' : host === 'sandbox' ? 'sandbox' : `host ${host}`, h('span', { class: 'muted' }, ` · ${lines.length} line${lines.length === 1 ? '' : 's'}`)),
                h(
                  'pre',
                  { class: 'log', tabindex: 0, 'aria-label': `output of ${step.stepId} on ${host}` },
                  ...lines.map((l) => h('span', { class: `line stream-${l.stream}` }, l.attempt > 1 ? `[#${l.attempt}] ` : '', l.text.replace(/\r?\n$/, ''), '\n')),
                ),
              ),
            ),
          ),
    ),
    aws.length ? h('section', {}, h('h3', {}, 'On AWS'), h('ul', { class: 'links' }, ...aws.map((a) => h('li', {}, h('a', { href: a.href, target: '_blank', rel: 'noopener' }, a.label))))) : '',
  );
}

/** Links into the AWS consoles, only when the execution runs on AWS (a local ARN has account 000000000000). */
function awsLinks(view: DeploymentView): { label: string; href: string }[] {
  const arn = view.executionArn;
  if (!arn || !/^arn:aws[\w-]*:states:[\w-]+:\d{12}:execution:/.test(arn) || arn.includes(':000000000000:')) return [];
  const region = arn.split(':')[3] ?? '';
  const links = [{ label: 'Execution in the Step Functions console', href: view.consoleUrl ?? `https://${region}.console.aws.amazon.com/states/home?region=${region}#/v2/executions/details/${arn}` }];
  links.push({
    label: 'Sandbox logs in CloudWatch (filtered by deployment)',
    href: `https://${region}.console.aws.amazon.com/cloudwatch/home?region=${region}#logsV2:logs-insights`,
  });
  return links;
}
