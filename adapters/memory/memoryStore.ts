import { ConflictError, ValidationError } from '../../core/errors.ts';
import { BaseDeploymentStore, conditionHolds } from '../../core/lifecycle/baseStore.ts';
import type { ConditionalWrite } from '../../core/lifecycle/types.ts';
import type { DeploymentRecord, SecretsRecord, StepLogLine, StepRecord } from '../../core/model.ts';
import type { Bundle } from '../../core/deployment/bundle.ts';
import { systemClock, type Clock, type CloudResourceRef, type DeploymentStore, type IdempotencyClaim, type Page } from '../../core/ports.ts';

/** Idempotency keys are remembered for a day, as in the DynamoDB store. */
const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;

/**
 * A copy as a document store would keep it: no shared references with the caller, and
 * undefined values dropped (what `removeUndefinedValues` does for DynamoDB).
 */
function stored<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

/** The DynamoDB store's log sort key, so both stores order lines the same way. */
function logSortKey(line: Pick<StepLogLine, 'stepId' | 'attempt' | 'seq'>): string {
  return `${line.stepId}#${String(line.attempt).padStart(4, '0')}#${String(line.seq).padStart(8, '0')}`;
}

const createdSk = (d: DeploymentRecord) => `${d.createdAt}#${d.deploymentId}`;

interface Cursor {
  tenantId: string;
  createdSk: string;
}

function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify(cursor), 'utf8').toString('base64url');
}

function decodeCursor(cursor: string, tenantId: string): Cursor {
  const invalid = () => new ValidationError('cursor is not valid', [{ path: 'cursor', message: 'cursor is not valid' }]);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  const c = parsed as Partial<Cursor> | null;
  if (typeof c !== 'object' || c === null || c.tenantId !== tenantId || typeof c.createdSk !== 'string' || c.createdSk.length > 256) {
    throw invalid();
  }
  return { tenantId, createdSk: c.createdSk };
}

/** The record after a write, or undefined when the write's condition does not hold (checked and applied in one turn). */
function written<T extends object>(record: T | undefined, write: ConditionalWrite): T | undefined {
  if (!record || !conditionHolds(record, write.condition)) return undefined;
  const defined = Object.fromEntries(Object.entries(write.set).filter(([, v]) => v !== undefined));
  const next: Record<string, unknown> = { ...record, ...defined };
  for (const f of write.remove) delete next[f];
  for (const [f, n] of Object.entries(write.add ?? {})) next[f] = ((next[f] as number | undefined) ?? 0) + n;
  return stored(next as T);
}

/**
 * The DeploymentStore in process memory, for use-case unit tests and nothing durable.
 * Same contract as DynamoDeploymentStore (test/integration/store-contract.test.ts runs both).
 */
export class MemoryDeploymentStore extends BaseDeploymentStore implements DeploymentStore {
  private readonly deployments = new Map<string, DeploymentRecord>();
  private readonly steps = new Map<string, Map<string, StepRecord>>();
  private readonly files = new Map<string, Bundle>();
  private readonly secrets = new Map<string, SecretsRecord>();
  private readonly logs = new Map<string, Map<string, StepLogLine>>();
  private readonly cloudResources = new Map<string, Map<string, CloudResourceRef>>();
  private readonly idempotency = new Map<string, { deploymentId: string; requestHash: string; claimedAt: number; expiresAt: number }>();
  private readonly clock: Clock;

  constructor(opts: { clock?: Clock } = {}) {
    super();
    this.clock = opts.clock ?? systemClock;
  }

  async create(input: {
    deployment: DeploymentRecord;
    steps: StepRecord[];
    files: Bundle;
    secrets: SecretsRecord;
  }): Promise<void> {
    const id = input.deployment.deploymentId;
    if (this.deployments.has(id)) throw new ConflictError(`deployment ${id} already exists`);
    this.steps.set(id, new Map(input.steps.map((s) => [s.stepId, stored(s)])));
    this.files.set(id, stored(input.files));
    this.secrets.set(id, stored(input.secrets));
    this.deployments.set(id, stored(input.deployment));
  }

  async claimIdempotencyKey(
    tenantId: string,
    key: string,
    deploymentId: string,
    requestHash: string,
  ): Promise<IdempotencyClaim> {
    const mapKey = JSON.stringify([tenantId, key]);
    const now = this.clock.now();
    const holder = this.idempotency.get(mapKey);
    if (holder && holder.expiresAt > Math.floor(now / 1000)) {
      return { claimed: false, deploymentId: holder.deploymentId, requestHash: holder.requestHash, claimedAt: holder.claimedAt };
    }
    this.idempotency.set(mapKey, { deploymentId, requestHash, claimedAt: now, expiresAt: Math.floor(now / 1000) + IDEMPOTENCY_TTL_SECONDS });
    return { claimed: true };
  }

  async releaseIdempotencyKey(tenantId: string, key: string, deploymentId: string): Promise<void> {
    const mapKey = JSON.stringify([tenantId, key]);
    if (this.idempotency.get(mapKey)?.deploymentId === deploymentId) this.idempotency.delete(mapKey);
  }

  async getDeployment(deploymentId: string): Promise<DeploymentRecord | undefined> {
    const d = this.deployments.get(deploymentId);
    return d && stored(d);
  }

  async listDeployments(tenantId: string, opts: { limit: number; cursor?: string }): Promise<Page<DeploymentRecord>> {
    if (!Number.isInteger(opts.limit) || opts.limit < 1) {
      throw new ValidationError('limit must be a positive integer', [{ path: 'limit', message: 'limit must be a positive integer' }]);
    }
    const after = opts.cursor === undefined ? undefined : decodeCursor(opts.cursor, tenantId).createdSk;
    const newestFirst = [...this.deployments.values()]
      .filter((d) => d.tenantId === tenantId && (after === undefined || createdSk(d) < after))
      .sort((a, b) => (createdSk(a) < createdSk(b) ? 1 : -1));
    const page = newestFirst.slice(0, opts.limit);
    const last = page[page.length - 1];
    return {
      items: page.map(stored),
      ...(newestFirst.length > opts.limit && last ? { nextCursor: encodeCursor({ tenantId, createdSk: createdSk(last) }) } : {}),
    };
  }

  protected async writeDeployment(deploymentId: string, write: ConditionalWrite): Promise<boolean> {
    const next = written(this.deployments.get(deploymentId), write);
    if (next) this.deployments.set(deploymentId, next);
    return next !== undefined;
  }

  async getStep(deploymentId: string, stepId: string): Promise<StepRecord | undefined> {
    const s = this.steps.get(deploymentId)?.get(stepId);
    return s && stored(s);
  }

  /** Ordered by step id, like the DynamoDB sort key. */
  async getSteps(deploymentId: string): Promise<StepRecord[]> {
    return [...(this.steps.get(deploymentId)?.values() ?? [])]
      .sort((a, b) => (a.stepId < b.stepId ? -1 : a.stepId > b.stepId ? 1 : 0))
      .map(stored);
  }

  protected async writeStep(deploymentId: string, stepId: string, write: ConditionalWrite): Promise<boolean> {
    const steps = this.steps.get(deploymentId);
    const next = written(steps?.get(stepId), write);
    if (steps && next) steps.set(stepId, next);
    return next !== undefined;
  }

  async getFiles(deploymentId: string): Promise<Bundle> {
    return stored(this.files.get(deploymentId) ?? {});
  }

  async getSecrets(deploymentId: string): Promise<SecretsRecord | undefined> {
    const s = this.secrets.get(deploymentId);
    return s && stored(s);
  }

  async deleteSecrets(deploymentId: string): Promise<void> {
    this.secrets.delete(deploymentId);
  }

  async appendLogs(deploymentId: string, lines: StepLogLine[]): Promise<void> {
    let logs = this.logs.get(deploymentId);
    if (!logs) this.logs.set(deploymentId, (logs = new Map()));
    for (const line of lines) logs.set(logSortKey(line), stored(line));
  }

  /** Ordered by step id, attempt, then sequence, like the DynamoDB sort key. */
  async getLogs(deploymentId: string, opts: { stepId?: string } = {}): Promise<StepLogLine[]> {
    return [...(this.logs.get(deploymentId)?.entries() ?? [])]
      .filter(([, line]) => opts.stepId === undefined || line.stepId === opts.stepId)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([, line]) => stored(line));
  }

  /** Keyed by kind and id, in insertion order (a Map keeps it): recording again keeps the first place. */
  async recordCloudResource(deploymentId: string, ref: CloudResourceRef): Promise<void> {
    let refs = this.cloudResources.get(deploymentId);
    if (!refs) this.cloudResources.set(deploymentId, (refs = new Map()));
    const key = `${ref.kind}#${ref.id}`;
    if (!refs.has(key)) refs.set(key, stored({ kind: ref.kind, id: ref.id, name: ref.name }));
  }

  async listCloudResources(deploymentId: string): Promise<CloudResourceRef[]> {
    return [...(this.cloudResources.get(deploymentId)?.values() ?? [])].map(stored);
  }

  async forgetCloudResource(deploymentId: string, kind: string, id: string): Promise<void> {
    this.cloudResources.get(deploymentId)?.delete(`${kind}#${id}`);
  }
}
