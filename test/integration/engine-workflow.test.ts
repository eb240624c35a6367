import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { DecryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { DescribeExecutionCommand, GetExecutionHistoryCommand, SFNClient } from '@aws-sdk/client-sfn';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StepView } from '../../core/api.ts';
import { ErrorName } from '../../core/errors.ts';
import { TABLE_NAME } from '../../local/engine.ts';
import { runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/** The whole embedded engine — real local services, real sandboxes — running `run` workflows. */

let t: TestEngine;
beforeAll(async () => {
  process.env.CTD_ENGINE_CANARY = 'engine-only-value';
  t = await startTestEngine();
});
afterAll(async () => {
  await t?.stop();
});

const at = (s: StepView | undefined, k: 'startedAt' | 'endedAt') => Date.parse(s?.[k] ?? 'x');

/**
 * A rendezvous the steps call from inside their sandboxes: a step's request is held until the
 * other step's arrives too ("met <other>"), or answered "alone" after HOLD_MS. Only sandboxes
 * running at the same time can meet.
 */
const HOLD_MS = 30_000;
async function startRendezvous(): Promise<{ url: string; server: Server }> {
  const waiting = new Map<string, (answer: string) => void>();
  const server = createServer((req, res) => {
    const who = decodeURIComponent(req.url?.slice(1) ?? '');
    const other = [...waiting.keys()].find((k) => k !== who);
    if (other) {
      waiting.get(other)!(`met ${who}`);
      waiting.delete(other);
      res.end(`met ${other}`);
      return;
    }
    const timer = setTimeout(() => {
      waiting.delete(who);
      res.end('alone');
    }, HOLD_MS);
    waiting.set(who, (answer) => {
      clearTimeout(timer);
      res.end(answer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

describe('Local engine: a DAG of run steps', () => {
  let id: string;
  let steps: Map<string, StepView>;
  let rendezvous: { url: string; server: Server };
  const meet = (who: string) => `${process.execPath} -e 'fetch("${rendezvous.url}/${who}").then((r) => r.text()).then(console.log)'`;

  beforeAll(async () => {
    rendezvous = await startRendezvous();
    const body = runDeployment([
      { id: 'fetch', command: `${meet('fetch')}; echo fetched` },
      { id: 'lint', command: `${meet('lint')}; echo linted` },
      { id: 'build-api', command: 'echo api', dependsOn: ['fetch'] },
      { id: 'build-web', command: 'echo web', dependsOn: ['fetch'] },
      { id: 'test', command: 'echo tested', dependsOn: ['build-api', 'build-web'] },
      { id: 'env', command: 'env | sort', dependsOn: ['lint'] },
    ]);
    id = (await t.client.submit(body)).deploymentId;
    const done = await t.waitForEnd(id);
    expect(done.status).toBe('SUCCEEDED');
    steps = new Map(done.steps.map((s) => [s.stepId, s]));
  }, 120_000);
  afterAll(() => new Promise<void>((resolve) => rendezvous?.server.close(() => resolve())));

  it('runs every step after all its dependencies ended, with bastion access opened first and closed last', () => {
    for (const s of steps.values()) {
      expect(s.status, s.stepId).toBe('succeeded');
      for (const dep of s.dependsOn) expect(at(s, 'startedAt'), `${s.stepId} after ${dep}`).toBeGreaterThanOrEqual(at(steps.get(dep), 'endedAt'));
    }
    const open = steps.get('bastion-open');
    const close = steps.get('bastion-close');
    for (const s of [...steps.values()].filter((x) => !x.system)) {
      expect(at(s, 'startedAt')).toBeGreaterThanOrEqual(at(open, 'endedAt'));
      expect(at(close, 'startedAt')).toBeGreaterThanOrEqual(at(s, 'endedAt'));
    }
  });

  // Seen from the sandboxes themselves: each step's command waited for the other's to arrive.
  it('runs independent steps in parallel', async () => {
    const stdout = async (step: string) => (await t.client.logs(id, { step })).lines.filter((l) => l.stream === 'stdout').map((l) => l.text);
    expect(await stdout('fetch')).toEqual(['met lint', 'fetched']);
    expect(await stdout('lint')).toEqual(['met fetch', 'linted']);
  });

  it('gives a run step the token but none of the engine\'s environment', async () => {
    const { lines } = await t.client.logs(id, { step: 'env' });
    const env = lines.filter((l) => l.stream === 'stdout').map((l) => l.text);
    expect(env.some((l) => l.startsWith('CTD_TOKEN=***'))).toBe(true);
    expect(env.join('\n')).not.toContain(t.token);
    const names = env.map((l) => l.split('=')[0]);
    for (const leaked of ['CTD_ENGINE_CANARY', 'AWS_SECRET_ACCESS_KEY', 'AWS_ENDPOINT_URL_KMS', 'CTD_TASK_TOKEN', 'CTD_KMS_KEY_ID']) {
      expect(names).not.toContain(leaked);
    }
  });

  it('gives the same answers through SFNClient and DynamoDBClient pointed at the local endpoints', async () => {
    const view = await t.client.get(id);
    const credentials = { accessKeyId: 'x', secretAccessKey: 'x' };
    const sfn = new SFNClient({ endpoint: t.engine.endpoints.sfn, region: 'us-east-1', credentials });
    const described = await sfn.send(new DescribeExecutionCommand({ executionArn: view.executionArn }));
    expect(described).toMatchObject({ status: 'SUCCEEDED', name: id });
    const history = await sfn.send(new GetExecutionHistoryCommand({ executionArn: view.executionArn, maxResults: 1000 }));
    const api = await t.client.history(id);
    expect(history.events?.map((e) => e.type)).toEqual(api.events.map((e) => e.type));
    expect(api.events[0]?.type).toBe('ExecutionStarted');
    expect(api.events.at(-1)?.type).toBe('ExecutionSucceeded');

    const ddb = new DynamoDBClient({ endpoint: t.engine.endpoints.dynamodb, region: 'us-east-1', credentials });
    const item = await ddb.send(new GetItemCommand({ TableName: TABLE_NAME, Key: { pk: { S: `DEP#${id}` }, sk: { S: 'META' } } }));
    expect(item.Item?.status?.S).toBe('SUCCEEDED');
    const secret = await ddb.send(new GetItemCommand({ TableName: TABLE_NAME, Key: { pk: { S: `DEP#${id}` }, sk: { S: 'SECRET#token' } } }));
    expect(secret.Item).toBeUndefined();
  });
});

describe('Local engine: sandbox isolation', () => {
  it('hides the engine\'s state (KMS key material, database) from a step', async () => {
    if (!t.engine.sandboxes.isolated) {
      // Without bubblewrap a sandbox is only a scrubbed process; CI installs bubblewrap, so it must be there.
      if (process.env.CI) throw new Error('bubblewrap is not usable: sandboxes would see the engine state');
      console.warn('[not checked] bubblewrap is not installed here: sandboxes are separate processes without namespaces');
      return;
    }
    const probe = `for f in '${t.stateDir}/kms/keys.json' '${t.stateDir}/dynamodb'; do if test -e "$f"; then echo "visible $f"; else echo "hidden $f"; fi; done`;
    const { deploymentId } = await t.client.submit(runDeployment([{ id: 'probe', command: probe }]));
    expect((await t.waitForEnd(deploymentId)).status).toBe('SUCCEEDED');
    const out = (await t.client.logs(deploymentId, { step: 'probe' })).lines.filter((l) => l.stream === 'stdout').map((l) => l.text);
    expect(out).toEqual([`hidden ${t.stateDir}/kms/keys.json`, `hidden ${t.stateDir}/dynamodb`]);
  });
});

describe('Local engine: a failing step', () => {
  it('skips its dependents, lets its running sibling finish, and names it as the cause', async () => {
    const body = runDeployment([
      { id: 'a', command: 'true' },
      { id: 'b', command: 'echo broken >&2; exit 3', dependsOn: ['a'] },
      { id: 'c', command: 'sleep 1.5; echo sibling done', dependsOn: ['a'] },
      { id: 'd', command: 'true', dependsOn: ['b'] },
    ]);
    const { deploymentId } = await t.client.submit(body);
    const done = await t.waitForEnd(deploymentId);
    const status = Object.fromEntries(done.steps.map((s) => [s.stepId, s.status]));
    expect(status).toEqual({ 'bastion-open': 'succeeded', a: 'succeeded', b: 'failed', c: 'succeeded', d: 'skipped', 'bastion-close': 'succeeded' });
    expect(done).toMatchObject({ status: 'FAILED', error: ErrorName.StepFailed });
    expect(done.cause).toContain('step "b" failed: command exited 3');
    const { lines } = await t.client.logs(deploymentId, { step: 'b' });
    expect(lines.some((l) => l.stream === 'stderr' && l.text === 'broken')).toBe(true);
  });
});

describe('Local engine: secrets', () => {
  it('binds the token ciphertext to its deployment: the local KMS refuses another context', async () => {
    const body = runDeployment([{ id: 'hold', command: 'sleep 2' }]);
    const { deploymentId } = await t.client.submit(body);
    const credentials = { accessKeyId: 'x', secretAccessKey: 'x' };
    const ddb = new DynamoDBClient({ endpoint: t.engine.endpoints.dynamodb, region: 'us-east-1', credentials });
    const item = await ddb.send(new GetItemCommand({ TableName: TABLE_NAME, Key: { pk: { S: `DEP#${deploymentId}` }, sk: { S: 'SECRET#token' } } }));
    // `g1.<grant id>.<grant token>.<KMS blob>` (adapters/aws/kmsVault.ts): the blob is the last part.
    const blob = Buffer.from(item.Item?.tokenCiphertext?.S?.split('.')[3] ?? '', 'base64');
    const kms = new KMSClient({ endpoint: t.engine.endpoints.kms, region: 'us-east-1', credentials });
    const right = await kms.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: { deploymentId, tenantId: t.tenantId } }));
    expect(Buffer.from(right.Plaintext ?? []).toString()).toBe(t.token);
    await expect(
      kms.send(new DecryptCommand({ CiphertextBlob: blob, EncryptionContext: { deploymentId, tenantId: 'someone-else' } })),
    ).rejects.toMatchObject({ name: 'InvalidCiphertextException' });
    expect((await t.waitForEnd(deploymentId)).status).toBe('SUCCEEDED');
    const gone = await ddb.send(new GetItemCommand({ TableName: TABLE_NAME, Key: { pk: { S: `DEP#${deploymentId}` }, sk: { S: 'SECRET#token' } } }));
    expect(gone.Item).toBeUndefined();
  });

  it('shows a tenant only its own deployments', async () => {
    const other = await t.clientFor('tenant-b');
    const { items } = await t.client.list();
    expect(items.length).toBeGreaterThan(0);
    expect((await other.list()).items).toEqual([]);
    await expect(other.get(items[0]!.deploymentId)).rejects.toMatchObject({ status: 404 });
  });

  it('answers 400 naming the field, and stores nothing', async () => {
    const before = (await t.client.list()).items.length;
    const bad = runDeployment([{ id: 'a', command: 'true', dependsOn: ['a'] }]);
    await expect(t.client.submit(bad)).rejects.toMatchObject({ status: 400, message: expect.stringContaining('workflow.steps') });
    expect((await t.client.list()).items.length).toBe(before);
  });
});
