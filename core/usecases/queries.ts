import type { DeploymentSummary, DeploymentView, HistoryResponse, ListResponse, StepView } from '../api.ts';
import { attributeEvents, stepTimelines } from '../history.ts';
import { NotFoundError, ValidationError } from '../errors.ts';
import type { DeploymentRecord, StepLogLine, StepRecord } from '../model.ts';
import { isDeploymentId, shownId } from '../ids.ts';
import type { EngineDeps } from './deps.ts';
import { idleSandboxSeconds } from './release.ts';

const STEP_ID = /^[a-z0-9][a-z0-9_-]{0,62}$/;

/** Read side of the API. A tenant sees only its own deployments: another's is "not found". */

export async function ownDeployment(deps: EngineDeps, tenantId: string, deploymentId: string): Promise<DeploymentRecord> {
  const deployment = isDeploymentId(deploymentId) ? await deps.store.getDeployment(deploymentId) : undefined;
  if (!deployment || deployment.tenantId !== tenantId) throw new NotFoundError(`deployment ${shownId(deploymentId)} not found`);
  return deployment;
}

export async function getDeployment(deps: EngineDeps, tenantId: string, deploymentId: string): Promise<DeploymentView> {
  const deployment = await ownDeployment(deps, tenantId, deploymentId);
  const steps = await deps.store.getSteps(deploymentId);
  return {
    ...summaryOf(deployment),
    ...(deployment.executionArn ? { executionArn: deployment.executionArn } : {}),
    ...(deployment.consoleUrl ? { consoleUrl: deployment.consoleUrl } : {}),
    ...(deployment.graceStartedAt ? { graceStartedAt: deployment.graceStartedAt } : {}),
    ...(deployment.cancelledAt ? { cancelledAt: deployment.cancelledAt } : {}),
    // Live while the deployment runs; Summarize stores the final figure on the record.
    idleSandboxSeconds: deployment.idleSandboxSeconds ?? idleSandboxSeconds(steps, deps.clock.now()),
    ...(deployment.prestartHalted ? { prestartHalted: deployment.prestartHalted } : {}),
    steps: orderForDisplay(deployment, steps).map(viewOf),
  };
}

export async function listDeployments(
  deps: EngineDeps,
  tenantId: string,
  query: { limit?: string; cursor?: string },
): Promise<ListResponse> {
  const limit = query.limit === undefined ? 50 : Number(query.limit);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw new ValidationError('limit: must be a whole number from 1 to 100');
  const page = await deps.store.listDeployments(tenantId, { limit, ...(query.cursor ? { cursor: query.cursor } : {}) });
  return { items: page.items.map(summaryOf), ...(page.nextCursor ? { nextCursor: page.nextCursor } : {}) };
}

/** The execution's history with the workflow step of every event, and each step's attempts, waits and grace. */
export async function getHistory(deps: EngineDeps, tenantId: string, deploymentId: string): Promise<HistoryResponse> {
  const deployment = await ownDeployment(deps, tenantId, deploymentId);
  if (!deployment.executionArn) return { events: [], steps: [] };
  const events = attributeEvents(await deps.executions.history(deployment.executionArn), deployment.stepIds);
  return { events, steps: stepTimelines(events) };
}

/** Log lines in the order they were written, across steps; a step the deployment lacks is "unknown". */
export async function getLogs(deps: EngineDeps, tenantId: string, deploymentId: string, stepId?: string): Promise<StepLogLine[]> {
  const deployment = await ownDeployment(deps, tenantId, deploymentId);
  if (stepId !== undefined && !STEP_ID.test(stepId)) throw new ValidationError(`step: "${shownId(stepId)}" is not a step id`);
  const known = ['bastion-open', ...deployment.stepIds, 'bastion-close'];
  if (stepId !== undefined && !known.includes(stepId)) {
    throw new NotFoundError(`unknown step "${stepId}" (steps: ${known.join(', ')})`);
  }
  const lines = await deps.store.getLogs(deploymentId, stepId ? { stepId } : {});
  // The store orders by step then attempt; a reader follows time. Equal stamps keep the store's order.
  return lines
    .map((line, index) => ({ line, index }))
    .sort((a, b) => a.line.at.localeCompare(b.line.at) || a.index - b.index)
    .map(({ line }) => line);
}

export function summaryOf(d: DeploymentRecord): DeploymentSummary {
  return {
    deploymentId: d.deploymentId,
    name: d.name,
    status: d.status,
    createdAt: d.createdAt,
    updatedAt: d.updatedAt,
    ...(d.endedAt ? { endedAt: d.endedAt } : {}),
    ...(d.error ? { error: d.error } : {}),
    ...(d.cause ? { cause: d.cause } : {}),
  };
}

function orderForDisplay(deployment: DeploymentRecord, steps: StepRecord[]): StepRecord[] {
  const byId = new Map(steps.map((s) => [s.stepId, s]));
  const ids = ['bastion-open', ...deployment.stepIds, 'bastion-close'];
  return ids.map((id) => byId.get(id)).filter((s): s is StepRecord => !!s);
}

function viewOf(s: StepRecord): StepView {
  return {
    stepId: s.stepId,
    action: s.spec.action,
    system: s.system,
    status: s.status,
    attempt: s.attempt,
    dependsOn: s.dependsOn,
    ...(s.startedAt ? { startedAt: s.startedAt } : {}),
    ...(s.endedAt ? { endedAt: s.endedAt } : {}),
    ...(s.error ? { error: s.error } : {}),
    ...(s.cause ? { cause: s.cause } : {}),
    ...(s.stopReason ? { stopReason: s.stopReason } : {}),
    ...(s.prestartedAt ? { prestartedAt: s.prestartedAt } : {}),
    ...(s.readyAt ? { readyAt: s.readyAt } : {}),
    ...(s.prestartFailure ? { prestartFailure: s.prestartFailure } : {}),
    ...(s.prestartFailedAt ? { prestartFailedAt: s.prestartFailedAt } : {}),
    ...(s.prestartIdleSeconds !== undefined ? { prestartIdleSeconds: s.prestartIdleSeconds } : {}),
    ...(s.output ? { output: s.output } : {}),
  };
}
