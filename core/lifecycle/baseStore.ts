import type { DeploymentRecord, DeploymentStatus, StepRecord, StepStatus } from '../model.ts';
import type { DeploymentStore } from '../ports.ts';
import { DEPLOYMENT_LIFECYCLE } from './deployment.ts';
import { STEP_LIFECYCLE } from './step.ts';
import type { DeploymentFields, DeploymentTransitionRequest, StepFields, StepTransitionRequest } from './requests.ts';
import type { Actor, ConditionalWrite, Lifecycle, TransitionResult, WriteCondition } from './types.ts';

/** Fields every record has; clearing one would leave an item the mappers cannot read. */
export const REQUIRED_DEPLOYMENT_FIELDS: readonly (keyof DeploymentRecord)[] = [
  'deploymentId', 'tenantId', 'name', 'status', 'createdAt', 'updatedAt', 'stepIds', 'topology',
];
export const REQUIRED_STEP_FIELDS: readonly (keyof StepRecord)[] = [
  'deploymentId', 'stepId', 'system', 'spec', 'dependsOn', 'status', 'attempt',
];

/** The deployment's counter of pre-start claims (claimPrestart). */
const PRESTART_CLAIMS = 'prestartClaims' satisfies keyof DeploymentRecord;
const PRESTART_HALTED = 'prestartHalted' satisfies keyof DeploymentRecord;

/** Whether a record satisfies a write's condition; the same test DynamoDB's ConditionExpression makes. */
export function conditionHolds(record: object, condition: WriteCondition): boolean {
  const fields = record as Record<string, unknown>;
  if (condition.statusIn !== undefined && !condition.statusIn.includes(fields.status as string)) return false;
  if (condition.absent !== undefined && fields[condition.absent] !== undefined) return false;
  if (condition.below !== undefined && ((fields[condition.below.field] as number | undefined) ?? 0) >= condition.below.limit) return false;
  return condition.attemptIs === undefined || fields.attempt === condition.attemptIs;
}

/**
 * The store rules both stores share, as Powertools' BasePersistenceLayer keeps them apart from I/O:
 * which fields may be cleared, that a status changes only through a named transition of
 * core/lifecycle, who may fire it, and what a refusal answers. A store implements only the reads
 * and one conditional write per record kind.
 */
export abstract class BaseDeploymentStore implements Pick<
  DeploymentStore,
  | 'updateDeployment'
  | 'clearDeploymentFields'
  | 'claimPrestart'
  | 'unclaimPrestart'
  | 'updateStep'
  | 'clearStepFields'
  | 'applyStepTransition'
  | 'applyDeploymentTransition'
> {
  abstract getDeployment(deploymentId: string): Promise<DeploymentRecord | undefined>;
  abstract getStep(deploymentId: string, stepId: string): Promise<StepRecord | undefined>;
  /** One conditional write to the deployment item; false when the item is missing or the condition fails. */
  protected abstract writeDeployment(deploymentId: string, write: ConditionalWrite): Promise<boolean>;
  /** One conditional write to a step item; false when the item is missing or the condition fails. */
  protected abstract writeStep(deploymentId: string, stepId: string, write: ConditionalWrite): Promise<boolean>;

  async updateDeployment(
    deploymentId: string,
    patch: DeploymentFields,
    opts: { ifStatus?: DeploymentStatus[]; ifAbsent?: keyof DeploymentRecord } = {},
  ): Promise<boolean> {
    assertNoStatus(patch);
    const condition = { ...(opts.ifStatus ? { statusIn: opts.ifStatus } : {}), ...(opts.ifAbsent ? { absent: opts.ifAbsent } : {}) };
    const write = { set: patch, remove: [], condition };
    if (isEmpty(write)) return holdsNow(await this.getDeployment(deploymentId), condition);
    return this.writeDeployment(deploymentId, write);
  }

  async clearDeploymentFields(deploymentId: string, fields: (keyof DeploymentRecord)[]): Promise<void> {
    assertOptional(fields, REQUIRED_DEPLOYMENT_FIELDS);
    if (fields.length > 0) await this.writeDeployment(deploymentId, { set: {}, remove: fields, condition: {} });
  }

  async claimPrestart(deploymentId: string, limit: number): Promise<boolean> {
    // Never once pre-start halted: a pass that read the deployment before the halt cannot start one more.
    return this.writeDeployment(deploymentId, { set: {}, remove: [], add: { [PRESTART_CLAIMS]: 1 }, condition: { below: { field: PRESTART_CLAIMS, limit }, absent: PRESTART_HALTED } });
  }

  async unclaimPrestart(deploymentId: string): Promise<void> {
    await this.writeDeployment(deploymentId, { set: {}, remove: [], add: { [PRESTART_CLAIMS]: -1 }, condition: {} });
  }

  async updateStep(
    deploymentId: string,
    stepId: string,
    patch: StepFields,
    opts: { ifStatus?: StepStatus[]; ifAbsent?: keyof StepRecord; clear?: (keyof StepRecord)[] } = {},
  ): Promise<boolean> {
    assertNoStatus(patch);
    assertOptional(opts.clear ?? [], REQUIRED_STEP_FIELDS);
    const condition = { ...(opts.ifStatus ? { statusIn: opts.ifStatus } : {}), ...(opts.ifAbsent ? { absent: opts.ifAbsent } : {}) };
    const write = { set: patch, remove: opts.clear ?? [], condition };
    if (isEmpty(write)) return holdsNow(await this.getStep(deploymentId, stepId), condition);
    return this.writeStep(deploymentId, stepId, write);
  }

  async clearStepFields(deploymentId: string, stepId: string, fields: (keyof StepRecord)[]): Promise<void> {
    assertOptional(fields, REQUIRED_STEP_FIELDS);
    if (fields.length > 0) await this.writeStep(deploymentId, stepId, { set: {}, remove: fields, condition: {} });
  }

  async applyStepTransition(deploymentId: string, stepId: string, request: StepTransitionRequest): Promise<TransitionResult<StepStatus>> {
    const write = transitionWrite(STEP_LIFECYCLE, request.name, request.by, request.fields ?? {});
    if (request.ifAttempt !== undefined) write.condition.attemptIs = request.ifAttempt;
    if (await this.writeStep(deploymentId, stepId, write)) return { applied: true };
    return { applied: false, transition: request.name, current: (await this.getStep(deploymentId, stepId))?.status };
  }

  async applyDeploymentTransition(deploymentId: string, request: DeploymentTransitionRequest): Promise<TransitionResult<DeploymentStatus>> {
    const write = transitionWrite(DEPLOYMENT_LIFECYCLE, request.name, request.by, request.fields ?? {});
    if (await this.writeDeployment(deploymentId, write)) return { applied: true };
    return { applied: false, transition: request.name, current: (await this.getDeployment(deploymentId))?.status };
  }
}

/** The write a transition makes: its status and fields, its clears, from its statuses only. */
function transitionWrite(
  lifecycle: Lifecycle<string>,
  name: string,
  by: Actor,
  fields: Record<string, unknown>,
): ConditionalWrite & { condition: WriteCondition } {
  const transition = lifecycle[name];
  if (!transition) throw new Error(`unknown transition "${name}"`);
  // A programming error, not a race: the table says who may fire each transition.
  if (!transition.by.includes(by)) throw new Error(`transition "${name}" may not be fired by ${by}`);
  assertNoStatus(fields);
  return { set: { ...fields, status: transition.to }, remove: transition.clears ?? [], condition: { statusIn: transition.from } };
}

function assertNoStatus(patch: object): void {
  if ('status' in patch) throw new Error('a status changes only through a named transition (core/lifecycle)');
}

function assertOptional(fields: readonly string[], required: readonly string[]): void {
  const bad = fields.filter((f) => required.includes(f));
  if (bad.length > 0) throw new Error(`cannot clear required fields: ${bad.join(', ')}`);
}

/** Undefined values are skipped: a patch says what changes, never what disappears. */
function isEmpty(write: ConditionalWrite): boolean {
  return write.remove.length === 0 && Object.values(write.set).every((v) => v === undefined);
}

function holdsNow(record: object | undefined, condition: WriteCondition): boolean {
  return record !== undefined && conditionHolds(record, condition);
}
