import type { DeploymentView } from '../../core/api.ts';
import { FINAL_DEPLOYMENT_STATUSES } from '../../core/model.ts';
import { readBundle } from '../bundle.ts';
import { ApiError, EndpointUnreachableError, type CtdClient } from '../client.ts';
import type { CommandContext } from '../context.ts';
import { EXIT } from '../errors.ts';
import { formatIdleSandboxes, formatInterval } from '../format.ts';
import { changedStepLines, renderSteps, TtyRenderer } from '../progress.ts';

export interface DeployOptions {
  wait?: boolean;
  idempotencyKey?: string;
}

/**
 * A poll may fail while the engine is busy or restarting; give up only after this many
 * failures in a row (≈ 10 s at the default interval) so one blip does not abandon the wait.
 */
const MAX_CONSECUTIVE_POLL_FAILURES = 20;

/** `ctd deploy FILE [--wait]`: submit, then optionally follow to the end. Exit 0 only on SUCCEEDED. */
export async function deploy(ctx: CommandContext, file: string, opts: DeployOptions): Promise<number> {
  const bundle = await readBundle(file);
  const client = await ctx.client();
  const submitted = await client.submit(bundle, opts.idempotencyKey ? { idempotencyKey: opts.idempotencyKey } : {});
  if (!opts.wait) {
    if (ctx.json) ctx.printJson(submitted);
    else {
      ctx.print(`deployment ${submitted.deploymentId} submitted (${submitted.status})`);
      ctx.print(`console: ${submitted.consoleUrl}`);
      ctx.print(`follow it with: ctd status ${submitted.deploymentId}`);
    }
    return EXIT.ok;
  }
  if (!ctx.json) {
    ctx.print(`deployment ${submitted.deploymentId} submitted`);
    ctx.print(`console: ${submitted.consoleUrl}`);
  }
  const final = await waitForDeployment(ctx, client, submitted.deploymentId);
  if (ctx.json) ctx.printJson(final);
  else printOutcome(ctx, { ...final, consoleUrl: final.consoleUrl ?? submitted.consoleUrl });
  return final.status === 'SUCCEEDED' ? EXIT.ok : EXIT.failed;
}

/**
 * Polls `GET /deployments/{id}` until a final status, drawing the steps: redrawn in place on a
 * terminal, one line per status change otherwise (logs stay readable in CI).
 */
export async function waitForDeployment(ctx: CommandContext, client: CtdClient, id: string): Promise<DeploymentView> {
  const { io } = ctx;
  const tty = io.stdout.isTTY === true && !ctx.json;
  const renderer = tty ? new TtyRenderer(io.stdout, io.stdout.columns ?? 0) : undefined;
  const seen = new Map<string, string>();
  let failures = 0;
  for (;;) {
    let view: DeploymentView;
    try {
      view = await client.get(id);
      failures = 0;
    } catch (err) {
      const transient = err instanceof EndpointUnreachableError || (err instanceof ApiError && err.status >= 500);
      if (!transient || ++failures >= MAX_CONSECUTIVE_POLL_FAILURES) throw err;
      await io.sleep(io.pollIntervalMs);
      continue;
    }
    const now = io.now();
    if (renderer) renderer.draw(renderSteps(view.steps, now));
    else if (!ctx.json) for (const line of changedStepLines(view.steps, seen, now)) ctx.print(line);
    if (FINAL_DEPLOYMENT_STATUSES.includes(view.status)) return view;
    await io.sleep(io.pollIntervalMs);
  }
}

export function printOutcome(ctx: CommandContext, view: DeploymentView): void {
  ctx.print(`${view.status} in ${formatInterval(view.createdAt, view.endedAt ?? view.updatedAt, ctx.io.now())}`);
  if (view.error) ctx.print(`  error:   ${view.error}`);
  if (view.cause) ctx.print(`  cause:   ${view.cause}`);
  const idle = formatIdleSandboxes(view.idleSandboxSeconds);
  if (idle) ctx.print(`  idle:    ${idle}`);
  if (view.consoleUrl) ctx.print(`  console: ${view.consoleUrl}`);
}
