import {
  BatchWriteCommand,
  DeleteCommand,
  GetCommand,
  PutCommand,
  QueryCommand,
  UpdateCommand,
  type BatchWriteCommandInput,
  type DynamoDBDocumentClient,
  type QueryCommandInput,
} from '@aws-sdk/lib-dynamodb';
import { ConflictError, ValidationError } from '../../core/errors.ts';
import { BaseDeploymentStore } from '../../core/lifecycle/baseStore.ts';
import type { ConditionalWrite } from '../../core/lifecycle/types.ts';
import type { DeploymentRecord, SecretsRecord, StepLogLine, StepRecord } from '../../core/model.ts';
import { systemClock, type Clock, type CloudResourceRef, type DeploymentStore, type IdempotencyClaim, type Page } from '../../core/ports.ts';
import type { Bundle } from '../../core/deployment/bundle.ts';
import { TABLE } from './table.ts';

/**
 * DynamoDB items as the document client reads and writes them. Attribute values are `any`
 * in lib-dynamodb (NativeAttributeValue); records are rebuilt from them in the mappers below.
 */
type Item = Record<string, unknown>;
type Key = Record<string, string>;
type WriteRequest = NonNullable<BatchWriteCommandInput['RequestItems']>[string][number];

/** DynamoDB accepts at most 25 requests per BatchWriteItem. */
const BATCH_SIZE = 25;
/** UnprocessedItems are retried with exponential backoff this many times before giving up. */
const BATCH_RETRIES = 8;
/** Idempotency keys are remembered for a day, as the API documents. */
const IDEMPOTENCY_TTL_SECONDS = 24 * 60 * 60;
/** Orders records made within one clock millisecond by one process (a step records one at a time). */
let recordSequence = 0;

/** The item keys of table.ts, built in one place so every method agrees on them. */
export const itemKeys = {
  deployment: (deploymentId: string): Key => ({ pk: `DEP#${deploymentId}`, sk: 'META' }),
  step: (deploymentId: string, stepId: string): Key => ({ pk: `DEP#${deploymentId}`, sk: `STEP#${stepId}` }),
  files: (deploymentId: string): Key => ({ pk: `DEP#${deploymentId}`, sk: 'FILES' }),
  secretToken: (deploymentId: string): Key => ({ pk: `DEP#${deploymentId}`, sk: 'SECRET#token' }),
  secretSshKey: (deploymentId: string): Key => ({ pk: `DEP#${deploymentId}`, sk: 'SECRET#sshkey' }),
  /** Zero-padded so the sort key orders lines by step, attempt, then sequence. */
  log: (deploymentId: string, line: Pick<StepLogLine, 'stepId' | 'attempt' | 'seq'>): Key => ({
    pk: `DEP#${deploymentId}`,
    sk: `LOG#${line.stepId}#${String(line.attempt).padStart(4, '0')}#${String(line.seq).padStart(8, '0')}`,
  }),
  /** One item per cloud resource, so two steps recording at once never overwrite each other. */
  cloudResource: (deploymentId: string, kind: string, id: string): Key => ({
    pk: `DEP#${deploymentId}`,
    sk: `RES#${encodeURIComponent(kind)}#${encodeURIComponent(id)}`,
  }),
  /** Components are URI-encoded so a "#" in a tenant id cannot make two tenants' keys collide. */
  idempotency: (tenantId: string, key: string): Key => ({
    pk: `IDEMP#${encodeURIComponent(tenantId)}#${encodeURIComponent(key)}`,
    sk: 'META',
  }),
  tenantPk: (tenantId: string): string => `TENANT#${tenantId}`,
  createdSk: (createdAt: string, deploymentId: string): string => `${createdAt}#${deploymentId}`,
};

const KEY_ATTRIBUTES = [TABLE.partitionKey, TABLE.sortKey] as const;
const INDEX_ATTRIBUTES = [TABLE.tenantIndex.partitionKey, TABLE.tenantIndex.sortKey] as const;

/** Record ↔ item mapping: the records are the items minus their key attributes. */
const mapper = {
  deploymentToItem: (d: DeploymentRecord): Item => ({
    ...d,
    ...itemKeys.deployment(d.deploymentId),
    [TABLE.tenantIndex.partitionKey]: itemKeys.tenantPk(d.tenantId),
    [TABLE.tenantIndex.sortKey]: itemKeys.createdSk(d.createdAt, d.deploymentId),
  }),
  deploymentFromItem: (item: Item): DeploymentRecord =>
    omit(item, [...KEY_ATTRIBUTES, ...INDEX_ATTRIBUTES]) as unknown as DeploymentRecord,
  stepToItem: (s: StepRecord): Item => ({ ...s, ...itemKeys.step(s.deploymentId, s.stepId) }),
  stepFromItem: (item: Item): StepRecord => omit(item, KEY_ATTRIBUTES) as unknown as StepRecord,
  secretsToItems: (deploymentId: string, s: SecretsRecord): Item[] => [
    { ...itemKeys.secretToken(deploymentId), tokenCiphertext: s.tokenCiphertext, [TABLE.ttlAttribute]: s.expiresAt },
    {
      ...itemKeys.secretSshKey(deploymentId),
      sshPrivateKeySealed: s.sshPrivateKeySealed,
      sshPublicKey: s.sshPublicKey,
      [TABLE.ttlAttribute]: s.expiresAt,
    },
  ],
  secretsFromItems: (token: Item, sshKey: Item): SecretsRecord => ({
    tokenCiphertext: token.tokenCiphertext as string,
    sshPrivateKeySealed: sshKey.sshPrivateKeySealed as string,
    sshPublicKey: sshKey.sshPublicKey as string,
    expiresAt: token[TABLE.ttlAttribute] as number,
  }),
  logToItem: (deploymentId: string, line: StepLogLine): Item => ({ ...line, ...itemKeys.log(deploymentId, line) }),
  logFromItem: (item: Item): StepLogLine => omit(item, KEY_ATTRIBUTES) as unknown as StepLogLine,
};

function omit(item: Item, attributes: readonly string[]): Item {
  const out: Item = { ...item };
  for (const a of attributes) delete out[a];
  return out;
}

function isConditionFailure(err: unknown): boolean {
  return (err as { name?: unknown } | null)?.name === 'ConditionalCheckFailedException';
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The list cursor is the tenant index's LastEvaluatedKey, base64url-encoded JSON. */
function encodeCursor(key: Key): string {
  return Buffer.from(JSON.stringify(key), 'utf8').toString('base64url');
}

/**
 * Cursors come from users; a forged one must not reach DynamoDB as ExclusiveStartKey
 * (it would 500 or, with another tenant's key, be rejected only by DynamoDB's own checks).
 */
function decodeCursor(cursor: string, tenantId: string): Key {
  const invalid = () => new ValidationError('cursor is not valid', [{ path: 'cursor', message: 'cursor is not valid' }]);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw invalid();
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalid();
  const entries = Object.entries(parsed);
  const expected = [...KEY_ATTRIBUTES, ...INDEX_ATTRIBUTES] as string[];
  // A hand-made cursor with an oversized key would reach DynamoDB and fail there as a 500.
  if (entries.length !== expected.length || !entries.every(([k, v]) => expected.includes(k) && typeof v === 'string' && v.length <= 256)) {
    throw invalid();
  }
  const key = parsed as Key;
  const deploymentId = key.pk?.startsWith('DEP#') ? key.pk.slice(4) : undefined;
  if (
    deploymentId === undefined ||
    deploymentId.length > 64 ||
    key.sk !== 'META' ||
    key[TABLE.tenantIndex.partitionKey] !== itemKeys.tenantPk(tenantId) ||
    !key[TABLE.tenantIndex.sortKey]?.endsWith(`#${deploymentId}`)
  ) {
    throw invalid();
  }
  return key;
}

function validateLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1) {
    throw new ValidationError('limit must be a positive integer', [{ path: 'limit', message: 'limit must be a positive integer' }]);
  }
}

/** An UpdateExpression with its attribute names and values, built from a partial record. */
class UpdateBuilder {
  readonly names: Record<string, string> = { '#pk': TABLE.partitionKey };
  readonly values: Record<string, unknown> = {};
  private readonly sets: string[] = [];
  private readonly removes: string[] = [];
  private readonly conditions: string[] = ['attribute_exists(#pk)'];
  private n = 0;

  private name(attribute: string): string {
    const alias = `#a${this.n++}`;
    this.names[alias] = attribute;
    return alias;
  }

  private value(v: unknown): string {
    const alias = `:v${this.n++}`;
    this.values[alias] = v;
    return alias;
  }

  /** Undefined values are skipped: a patch says what changes, never what disappears. */
  set(patch: Record<string, unknown>): this {
    for (const [attribute, v] of Object.entries(patch)) {
      if (v !== undefined) this.sets.push(`${this.name(attribute)} = ${this.value(v)}`);
    }
    return this;
  }

  remove(attributes: readonly string[]): this {
    for (const attribute of attributes) this.removes.push(this.name(attribute));
    return this;
  }

  ifStatusIn(statuses: readonly string[] | undefined): this {
    if (statuses === undefined) return this;
    // An empty IN list is a syntax error in DynamoDB; "from none of these" can never match.
    if (statuses.length === 0) throw new Error('ifStatus must list at least one status');
    this.conditions.push(`${this.name('status')} IN (${statuses.map((s) => this.value(s)).join(', ')})`);
    return this;
  }

  ifAbsent(attribute: string | undefined): this {
    if (attribute !== undefined) this.conditions.push(`attribute_not_exists(${this.name(attribute)})`);
    return this;
  }

  /** `attribute += n`, an absent attribute counting 0, in the same SET as the other fields. */
  add(increments: Readonly<Record<string, number>> | undefined): this {
    for (const [attribute, n] of Object.entries(increments ?? {})) {
      const alias = this.name(attribute);
      this.sets.push(`${alias} = if_not_exists(${alias}, ${this.value(0)}) + ${this.value(n)}`);
    }
    return this;
  }

  ifBelow(below: { field: string; limit: number } | undefined): this {
    if (below === undefined) return this;
    const alias = this.name(below.field);
    this.conditions.push(`(attribute_not_exists(${alias}) OR ${alias} < ${this.value(below.limit)})`);
    return this;
  }

  ifEquals(attribute: string, v: unknown): this {
    if (v !== undefined) this.conditions.push(`${this.name(attribute)} = ${this.value(v)}`);
    return this;
  }

  /** A ConditionalWrite of core/lifecycle as one UpdateItem. */
  static of(write: ConditionalWrite): UpdateBuilder {
    return new UpdateBuilder()
      .set(write.set)
      .add(write.add)
      .remove(write.remove)
      .ifStatusIn(write.condition.statusIn)
      .ifAbsent(write.condition.absent)
      .ifBelow(write.condition.below)
      .ifEquals('attempt', write.condition.attemptIs);
  }

  build() {
    const parts = [
      this.sets.length > 0 ? `SET ${this.sets.join(', ')}` : '',
      this.removes.length > 0 ? `REMOVE ${this.removes.join(', ')}` : '',
    ];
    return {
      UpdateExpression: parts.filter(Boolean).join(' '),
      ConditionExpression: this.conditions.join(' AND '),
      ExpressionAttributeNames: this.names,
      ...(Object.keys(this.values).length > 0 ? { ExpressionAttributeValues: this.values } : {}),
    };
  }
}

export interface DynamoDeploymentStoreOptions {
  /** Built with `removeUndefinedValues` (see clients.ts): records carry optional fields as undefined. */
  client: DynamoDBDocumentClient;
  tableName: string;
  /** Idempotency keys expire relative to this clock. */
  clock?: Clock;
}

/**
 * The DeploymentStore on the one table of table.ts. DynamoDB Local stand-ins (dynalite) lack
 * TransactWriteItems, so `create` orders its writes instead: the deployment item, written last
 * and conditionally, is the commit point; the other items are invisible until it exists.
 */
export class DynamoDeploymentStore extends BaseDeploymentStore implements DeploymentStore {
  private readonly client: DynamoDBDocumentClient;
  private readonly tableName: string;
  private readonly clock: Clock;

  constructor(opts: DynamoDeploymentStoreOptions) {
    super();
    this.client = opts.client;
    this.tableName = opts.tableName;
    this.clock = opts.clock ?? systemClock;
  }

  async create(input: {
    deployment: DeploymentRecord;
    steps: StepRecord[];
    files: Bundle;
    secrets: SecretsRecord;
  }): Promise<void> {
    const { deployment } = input;
    const id = deployment.deploymentId;
    // Without this check, writing the children of a duplicate id would overwrite the existing deployment's.
    if (await this.getDeployment(id)) throw new ConflictError(`deployment ${id} already exists`);

    const children: Item[] = [
      ...input.steps.map(mapper.stepToItem),
      { ...itemKeys.files(id), files: input.files },
      ...mapper.secretsToItems(id, input.secrets),
    ];
    try {
      // Inside the try: a batch refused half-way must not leave the batches before it behind.
      await this.batchWrite(children.map((Item) => ({ PutRequest: { Item } })));
      await this.client.send(
        new PutCommand({
          TableName: this.tableName,
          Item: mapper.deploymentToItem(deployment),
          ConditionExpression: 'attribute_not_exists(#pk)',
          ExpressionAttributeNames: { '#pk': TABLE.partitionKey },
        }),
      );
    } catch (err) {
      const deletes = children.map((item) => ({
        DeleteRequest: { Key: { pk: item.pk as string, sk: item.sk as string } },
      }));
      try {
        await this.batchWrite(deletes);
      } catch (rollbackErr) {
        throw new AggregateError([err, rollbackErr], `deployment ${id} not created and its items not all removed`);
      }
      throw isConditionFailure(err) ? new ConflictError(`deployment ${id} already exists`) : err;
    }
  }

  async claimIdempotencyKey(
    tenantId: string,
    key: string,
    deploymentId: string,
    requestHash: string,
  ): Promise<IdempotencyClaim> {
    const itemKey = itemKeys.idempotency(tenantId, key);
    // A holder may release the key between our failed put and our read; try again then.
    for (let attempt = 0; attempt < 3; attempt++) {
      const now = this.clock.now();
      const nowSeconds = Math.floor(now / 1000);
      try {
        await this.client.send(
          new PutCommand({
            TableName: this.tableName,
            Item: {
              ...itemKey,
              tenantId,
              idempotencyKey: key,
              deploymentId,
              requestHash,
              claimedAt: now,
              [TABLE.ttlAttribute]: nowSeconds + IDEMPOTENCY_TTL_SECONDS,
            },
            // TTL deletes lazily (up to days late), so an expired item still present counts as free.
            ConditionExpression: 'attribute_not_exists(#pk) OR #exp <= :now',
            ExpressionAttributeNames: { '#pk': TABLE.partitionKey, '#exp': TABLE.ttlAttribute },
            ExpressionAttributeValues: { ':now': nowSeconds },
          }),
        );
        return { claimed: true };
      } catch (err) {
        if (!isConditionFailure(err)) throw err;
      }
      const holder = await this.getItem(itemKey);
      if (holder) {
        return {
          claimed: false,
          deploymentId: holder.deploymentId as string,
          requestHash: holder.requestHash as string,
          claimedAt: typeof holder.claimedAt === 'number' ? holder.claimedAt : 0,
        };
      }
    }
    throw new Error(`idempotency key ${key} kept changing hands; retry the request`);
  }

  async releaseIdempotencyKey(tenantId: string, key: string, deploymentId: string): Promise<void> {
    try {
      await this.client.send(
        new DeleteCommand({
          TableName: this.tableName,
          Key: itemKeys.idempotency(tenantId, key),
          ConditionExpression: 'deploymentId = :holder',
          ExpressionAttributeValues: { ':holder': deploymentId },
        }),
      );
    } catch (err) {
      // Another request holds the key now (or nobody does): not ours to release.
      if (!isConditionFailure(err)) throw err;
    }
  }

  async getDeployment(deploymentId: string): Promise<DeploymentRecord | undefined> {
    const item = await this.getItem(itemKeys.deployment(deploymentId));
    return item && mapper.deploymentFromItem(item);
  }

  /**
   * Newest first. Reads one item past the page so `nextCursor` is absent on the last page
   * (DynamoDB alone returns a LastEvaluatedKey whenever Limit is reached, even at the end).
   */
  async listDeployments(tenantId: string, opts: { limit: number; cursor?: string }): Promise<Page<DeploymentRecord>> {
    validateLimit(opts.limit);
    let startKey: Key | undefined = opts.cursor === undefined ? undefined : decodeCursor(opts.cursor, tenantId);
    const items: Item[] = [];
    do {
      const res = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          IndexName: TABLE.tenantIndex.name,
          KeyConditionExpression: '#t = :t',
          ExpressionAttributeNames: { '#t': TABLE.tenantIndex.partitionKey },
          ExpressionAttributeValues: { ':t': itemKeys.tenantPk(tenantId) },
          ScanIndexForward: false,
          Limit: opts.limit + 1 - items.length,
          ...(startKey ? { ExclusiveStartKey: startKey } : {}),
        }),
      );
      items.push(...(res.Items ?? []));
      startKey = res.LastEvaluatedKey as Key | undefined;
    } while (startKey && items.length <= opts.limit);

    const page = items.slice(0, opts.limit);
    const last = page[page.length - 1];
    const nextCursor =
      items.length > opts.limit && last
        ? encodeCursor(
            Object.fromEntries([...KEY_ATTRIBUTES, ...INDEX_ATTRIBUTES].map((a) => [a, last[a] as string])),
          )
        : undefined;
    return { items: page.map(mapper.deploymentFromItem), ...(nextCursor ? { nextCursor } : {}) };
  }

  protected async writeDeployment(deploymentId: string, write: ConditionalWrite): Promise<boolean> {
    const createdAt = write.set.createdAt;
    // The tenant index sorts by creation: a changed createdAt moves the deployment in it.
    const set = typeof createdAt === 'string' ? { ...write.set, [TABLE.tenantIndex.sortKey]: itemKeys.createdSk(createdAt, deploymentId) } : write.set;
    return this.conditionalUpdate(itemKeys.deployment(deploymentId), UpdateBuilder.of({ ...write, set }));
  }

  async getStep(deploymentId: string, stepId: string): Promise<StepRecord | undefined> {
    const item = await this.getItem(itemKeys.step(deploymentId, stepId));
    return item && mapper.stepFromItem(item);
  }

  async getSteps(deploymentId: string): Promise<StepRecord[]> {
    return (await this.queryPrefix(deploymentId, 'STEP#')).map(mapper.stepFromItem);
  }

  protected async writeStep(deploymentId: string, stepId: string, write: ConditionalWrite): Promise<boolean> {
    return this.conditionalUpdate(itemKeys.step(deploymentId, stepId), UpdateBuilder.of(write));
  }

  async getFiles(deploymentId: string): Promise<Bundle> {
    const item = await this.getItem(itemKeys.files(deploymentId));
    return (item?.files as Bundle | undefined) ?? {};
  }

  /** Both halves or nothing: a deployment whose secrets are half deleted has none left to use. */
  async getSecrets(deploymentId: string): Promise<SecretsRecord | undefined> {
    const items = await this.queryPrefix(deploymentId, 'SECRET#');
    const token = items.find((i) => i.sk === itemKeys.secretToken(deploymentId).sk);
    const sshKey = items.find((i) => i.sk === itemKeys.secretSshKey(deploymentId).sk);
    return token && sshKey ? mapper.secretsFromItems(token, sshKey) : undefined;
  }

  async deleteSecrets(deploymentId: string): Promise<void> {
    await this.batchWrite(
      [itemKeys.secretToken(deploymentId), itemKeys.secretSshKey(deploymentId)].map((Key) => ({ DeleteRequest: { Key } })),
    );
  }

  async appendLogs(deploymentId: string, lines: StepLogLine[]): Promise<void> {
    // One BatchWriteItem may not touch a key twice; a repeated (step, attempt, seq) keeps its last line.
    const bySk = new Map<string, Item>();
    for (const line of lines) {
      const item = mapper.logToItem(deploymentId, line);
      bySk.set(item.sk as string, item);
    }
    await this.batchWrite([...bySk.values()].map((Item) => ({ PutRequest: { Item } })));
  }

  /** Ordered by step id, attempt, then sequence: the sort key's order. */
  async getLogs(deploymentId: string, opts: { stepId?: string } = {}): Promise<StepLogLine[]> {
    const prefix = opts.stepId === undefined ? 'LOG#' : `LOG#${opts.stepId}#`;
    return (await this.queryPrefix(deploymentId, prefix)).map(mapper.logFromItem);
  }

  /**
   * Conditional on absence: adopting a resource records it again, and its first `recordedAt` must
   * stay so deletion keeps the creation order. Like steps and logs, the item lives as long as its
   * deployment (no TTL): it is how a later clean-up finds what the deployment created.
   */
  async recordCloudResource(deploymentId: string, ref: CloudResourceRef): Promise<void> {
    try {
      await this.client.send(
        new PutCommand({
          TableName: this.tableName,
          Item: { ...itemKeys.cloudResource(deploymentId, ref.kind, ref.id), kind: ref.kind, id: ref.id, name: ref.name, recordedAt: this.clock.now(), seq: recordSequence++ },
          ConditionExpression: 'attribute_not_exists(#pk)',
          ExpressionAttributeNames: { '#pk': TABLE.partitionKey },
        }),
      );
    } catch (err) {
      if (!isConditionFailure(err)) throw err;
    }
  }

  async listCloudResources(deploymentId: string): Promise<CloudResourceRef[]> {
    const items = await this.queryPrefix(deploymentId, 'RES#');
    return items
      .map((i) => ({ ref: { kind: i.kind as string, id: i.id as string, name: i.name as string }, at: i.recordedAt as number, seq: i.seq as number }))
      .sort((a, b) => a.at - b.at || a.seq - b.seq)
      .map((r) => r.ref);
  }

  /** Through BatchWriteItem, as the sandbox writes everything else: its role has no DeleteItem. */
  async forgetCloudResource(deploymentId: string, kind: string, id: string): Promise<void> {
    await this.batchWrite([{ DeleteRequest: { Key: itemKeys.cloudResource(deploymentId, kind, id) } }]);
  }

  /** Strongly consistent: conditional updates are decided on what callers just read. */
  private async getItem(key: Key): Promise<Item | undefined> {
    const res = await this.client.send(new GetCommand({ TableName: this.tableName, Key: key, ConsistentRead: true }));
    return res.Item;
  }

  private async queryPrefix(deploymentId: string, prefix: string): Promise<Item[]> {
    const items: Item[] = [];
    let startKey: QueryCommandInput['ExclusiveStartKey'];
    do {
      const res = await this.client.send(
        new QueryCommand({
          TableName: this.tableName,
          KeyConditionExpression: '#pk = :pk AND begins_with(#sk, :prefix)',
          ExpressionAttributeNames: { '#pk': TABLE.partitionKey, '#sk': TABLE.sortKey },
          ExpressionAttributeValues: { ':pk': `DEP#${deploymentId}`, ':prefix': prefix },
          ConsistentRead: true,
          ...(startKey ? { ExclusiveStartKey: startKey } : {}),
        }),
      );
      items.push(...(res.Items ?? []));
      startKey = res.LastEvaluatedKey;
    } while (startKey);
    return items;
  }

  private async conditionalUpdate(key: Key, update: UpdateBuilder): Promise<boolean> {
    try {
      await this.client.send(new UpdateCommand({ TableName: this.tableName, Key: key, ...update.build() }));
      return true;
    } catch (err) {
      if (isConditionFailure(err)) return false;
      throw err;
    }
  }

  /** BatchWriteItem in chunks of 25, retrying what DynamoDB leaves unprocessed under throttling. */
  private async batchWrite(requests: WriteRequest[]): Promise<void> {
    for (let start = 0; start < requests.length; start += BATCH_SIZE) {
      let pending = requests.slice(start, start + BATCH_SIZE);
      for (let retry = 0; pending.length > 0; retry++) {
        if (retry > BATCH_RETRIES) {
          throw new Error(`BatchWriteItem left ${pending.length} items unprocessed after ${BATCH_RETRIES} retries`);
        }
        if (retry > 0) await sleep(Math.min(50 * 2 ** retry, 2000));
        const res = await this.client.send(new BatchWriteCommand({ RequestItems: { [this.tableName]: pending } }));
        pending = res.UnprocessedItems?.[this.tableName] ?? [];
      }
    }
  }
}
