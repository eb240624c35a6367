import { prestartFallbackOutcome, type DeploymentView, type StepView } from '../../core/api.ts';
import type { AttributedEvent } from '../../core/history.ts';
import type { StepLogLine } from '../../core/model.ts';
import { FINAL_DEPLOYMENT_STATUSES } from '../../core/model.ts';
import type { CommandContext } from '../context.ts';
import { EXIT } from '../errors.ts';
import { formatIdleSandboxes, formatInterval, formatTable, formatTimestamp } from '../format.ts';
import { stepLabel } from '../progress.ts';

/** The read-only commands: ls, status, history, logs. Each prints the API's body as is with --json. */

export async function list(ctx: CommandContext, opts: { cursor?: string; limit?: number }): Promise<number> {
  const client = await ctx.client();
  const page = await client.list(opts);
  if (ctx.json) {
    ctx.printJson(page);
    return EXIT.ok;
  }
  const now = ctx.io.now();
  const rows = page.items.map((d) => [
    d.deploymentId,
    d.name,
    d.status,
    formatTimestamp(d.createdAt),
    formatInterval(d.createdAt, d.endedAt, now),
  ]);
  if (rows.length === 0) ctx.print('no deployments');
  else for (const line of formatTable(['ID', 'NAME', 'STATUS', 'CREATED', 'DURATION'], rows)) ctx.print(line);
  if (page.nextCursor) ctx.print(`more: ctd ls --cursor ${page.nextCursor}`);
  return EXIT.ok;
}

export async function status(ctx: CommandContext, id: string): Promise<number> {
  const client = await ctx.client();
  const view = await client.get(id);
  if (ctx.json) {
    ctx.printJson(view);
    return EXIT.ok;
  }
  for (const line of describeDeployment(view, ctx.io.now())) ctx.print(line);
  return EXIT.ok;
}

/** Summary block then the steps table; exported for tests and for reuse by other views. */
export function describeDeployment(view: DeploymentView, now: number): string[] {
  const lines = [
    `id:       ${view.deploymentId}`,
    `name:     ${view.name}`,
    `status:   ${view.status}`,
    `created:  ${formatTimestamp(view.createdAt)}`,
  ];
  if (view.endedAt) lines.push(`ended:    ${formatTimestamp(view.endedAt)}`);
  lines.push(`duration: ${formatInterval(view.createdAt, view.endedAt, now)}`);
  // Live while it runs.
  const idle = formatIdleSandboxes(view.idleSandboxSeconds);
  if (idle) lines.push(`idle:     ${idle}`);
  if (view.prestartHalted) lines.push(`ahead:    halted, steps start at their release: ${view.prestartHalted}`);
  if (view.error) lines.push(`error:    ${view.error}`);
  if (view.cause) lines.push(`cause:    ${view.cause}`);
  if (view.consoleUrl) lines.push(`console:  ${view.consoleUrl}`);
  lines.push('');
  lines.push(...formatTable(['STEP', 'ACTION', 'STATUS', 'ATTEMPT', 'STARTED', 'DURATION', 'ERROR'], view.steps.map((s) => stepRow(s, now))));
  // A sandbox started ahead that did not serve its step (refused, lost, or past its idle limit).
  const fellBack = view.steps.filter((s) => s.prestartFailure);
  if (fellBack.length) lines.push('', 'sandboxes started ahead that did not serve their step:', ...fellBack.map((s) => `  ${s.stepId}: ${s.prestartFailure}; ${prestartFallbackOutcome(s.status)}`));
  return lines;
}

function stepRow(step: StepView, now: number): string[] {
  return [
    step.stepId,
    step.system ? `${step.action} (system)` : step.action,
    stepLabel(step),
    String(step.attempt),
    formatTimestamp(step.startedAt),
    formatInterval(step.startedAt, step.endedAt, now),
    step.error ?? '',
  ];
}

export async function history(ctx: CommandContext, id: string): Promise<number> {
  const client = await ctx.client();
  const { events } = await client.history(id);
  if (ctx.json) {
    ctx.printJson({ events });
    return EXIT.ok;
  }
  const stepWidth = Math.max(1, ...events.map((e) => e.stepId?.length ?? 0));
  for (const e of events) ctx.print(historyLine(e, stepWidth));
  return EXIT.ok;
}

/**
 * `id timestamp step type detail`; the step is the workflow step the event belongs to ("-" for
 * the engine's own states). Events are AWS-shaped (`stateEnteredEventDetails: {name}`,
 * `executionFailedEventDetails: {error, cause}`…): the detail is the state name, else the error.
 */
export function historyLine(event: AttributedEvent, stepWidth = 0): string {
  let name: string | undefined;
  let error: string | undefined;
  let cause: string | undefined;
  for (const [key, value] of Object.entries(event)) {
    if (!key.endsWith('EventDetails') || typeof value !== 'object' || value === null) continue;
    const details = value as Record<string, unknown>;
    if (typeof details.name === 'string') name ??= details.name;
    if (typeof details.error === 'string') error ??= details.error;
    if (typeof details.cause === 'string') cause ??= details.cause;
  }
  const detail = name ?? (error ? (cause ? `${error}: ${cause}` : error) : '');
  const step = (event.stepId ?? '-').padEnd(stepWidth);
  return [String(event.id).padStart(4), formatTimestamp(event.timestamp), step, event.type, detail].join('  ').trimEnd();
}

/** `[step host stream] text`; a retry shows its attempt as `step#2`. */
export function logLine(line: StepLogLine): string {
  const step = line.attempt > 1 ? `${line.stepId}#${line.attempt}` : line.stepId;
  const prefix = [step, line.host, line.stream].filter(Boolean).join(' ');
  return `[${prefix}] ${line.text.replace(/\r?\n$/, '')}`;
}

export async function logs(ctx: CommandContext, id: string, opts: { step?: string; follow?: boolean }): Promise<number> {
  const client = await ctx.client();
  const query = opts.step ? { step: opts.step } : {};
  const printed = new Set<string>();
  const emit = (lines: StepLogLine[]) => {
    for (const line of lines) {
      const key = `${line.stepId}\0${line.attempt}\0${line.host ?? ''}\0${line.stream}\0${line.seq}`;
      if (printed.has(key)) continue;
      printed.add(key);
      if (ctx.json) ctx.print(JSON.stringify(line));
      else ctx.print(logLine(line));
    }
  };
  if (!opts.follow) {
    const { lines } = await client.logs(id, query);
    if (ctx.json) ctx.printJson({ lines });
    else emit(lines);
    return EXIT.ok;
  }
  // Follow: print new lines until the deployment ends, then fetch once more for the last lines.
  for (;;) {
    const view = await client.get(id);
    emit((await client.logs(id, query)).lines);
    if (FINAL_DEPLOYMENT_STATUSES.includes(view.status)) return EXIT.ok;
    await ctx.io.sleep(Math.max(ctx.io.pollIntervalMs, 1000));
  }
}
