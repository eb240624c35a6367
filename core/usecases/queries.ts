import type { DeploymentSummary, DeploymentView, ListResponse, StepView } from '../api.ts';
import { NotFoundError, ValidationError } from '../errors.ts';
import type { DeploymentRecord, HistoryEvent, StepLogLine, StepRecord } from '../model.ts';
import type { EngineDeps } from './deps.ts';

/** Read side of the API. A tenant sees only its own deployments: another's is "not found". */

export async function ownDeployment(deps: EngineDeps, tenantId: string, deploymentId: string): Promise<DeploymentRecord> {
  const deployment = await deps.store.getDeployment(deploymentId);
  if (!deployment || deployment.tenantId !== tenantId) throw new NotFoundError(`deployment ${deploymentId} not found`);
  return deployment;
}

export async function getDeployment(deps: EngineDeps, tenantId: string, deploymentId: string): Promise<DeploymentView> {
  const deployment = await ownDeployment(deps, tenantId, deploymentId);
  const steps = await deps.store.getSteps(deploymentId);
  return {
    ...summaryOf(deployment),
    ...(deployment.executionArn ? { executionArn: deployment.executionArn } : {}),
    ...(deployment.consoleUrl ? { consoleUrl: deployment.consoleUrl } : {}),
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

export async function getHistory(deps: EngineDeps, tenantId: string, deploymentId: string): Promise<HistoryEvent[]> {
  const deployment = await ownDeployment(deps, tenantId, deploymentId);
  return deployment.executionArn ? deps.executions.history(deployment.executionArn) : [];
}

export async function getLogs(deps: EngineDeps, tenantId: string, deploymentId: string, stepId?: string): Promise<StepLogLine[]> {
  await ownDeployment(deps, tenantId, deploymentId);
  return deps.store.getLogs(deploymentId, stepId ? { stepId } : {});
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
    ...(s.output ? { output: s.output } : {}),
  };
}
