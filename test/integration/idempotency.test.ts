import { afterEach, describe, expect, it } from 'vitest';
import { DynamoDeploymentStore } from '../../adapters/aws/dynamoStore.ts';
import { MemoryDeploymentStore } from '../../adapters/memory/memoryStore.ts';
import { ConflictError } from '../../core/errors.ts';
import type { Clock, DeploymentStore } from '../../core/ports.ts';
import { submitDeployment, type SubmitResult } from '../../core/usecases/submit.ts';
import { startTestDynamo } from '../helpers/dynalite.ts';
import { memoryDeps } from '../helpers/memoryEngine.ts';

/** Idempotency-Key under concurrency, on both stores: one deployment, however the submits interleave. */

const body = {
  name: 'demo',
  bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
  workflow: { steps: [{ id: 'a', action: 'run', command: 'true' }] },
};

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0)) await close();
});

const stores: { name: string; make(clock: Clock): Promise<DeploymentStore> }[] = [
  { name: 'memory store', make: async (clock) => new MemoryDeploymentStore({ clock }) },
  {
    name: 'DynamoDB store (dynalite)',
    make: async (clock) => {
      const dynamo = await startTestDynamo();
      closers.push(dynamo.close);
      return new DynamoDeploymentStore({ client: dynamo.client, tableName: dynamo.tableName, clock });
    },
  },
];

function depsWith(store: DeploymentStore, clock: Clock) {
  return { ...memoryDeps(), store, clock };
}

describe.each(stores)('Use-case: submitDeployment with an Idempotency-Key ($name)', ({ make }) => {
  it('gives 20 concurrent submits of one key exactly one deployment, and every caller its id', async () => {
    for (let round = 0; round < 3; round++) {
      const clock: Clock = { now: () => Date.now() };
      const deps = depsWith(await make(clock), clock);
      const submits = Array.from({ length: 20 }, async () => {
        // Randomized start: the submits interleave differently on every round.
        await new Promise((r) => setTimeout(r, Math.random() * 20));
        return submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body, idempotencyKey: `key-${round}` });
      });
      const results: SubmitResult[] = await Promise.all(submits);
      expect(new Set(results.map((r) => r.deploymentId)).size).toBe(1);
      expect(results.filter((r) => r.created)).toHaveLength(1);
      expect((await deps.store.listDeployments('t1', { limit: 50 })).items).toHaveLength(1);
      expect(deps.executions.started).toHaveLength(1);
    }
  });

  it('takes over a key whose submit died between claim and commit, once the claim is stale', async () => {
    let now = Date.parse('2026-11-26T12:00:00Z');
    const clock: Clock = { now: () => now };
    const deps = depsWith(await make(clock), clock);
    await deps.store.claimIdempotencyKey('t1', 'key-1', 'd-dead', 'whatever');
    now += 61_000;
    const result = await submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body, idempotencyKey: 'key-1' });
    expect(result.created).toBe(true);
    expect(result.deploymentId).not.toBe('d-dead');
  });

  it('answers 409 "still being processed" while a fresh claim has no deployment yet', async () => {
    const hash = (await import('node:crypto')).createHash('sha256').update(JSON.stringify(body)).digest('hex');
    let now = Date.parse('2026-11-26T12:00:00Z');
    // Time runs fast as the submit looks at it: past the 10 s wait within a few polls, never 60 s stale.
    const clock: Clock = { now: () => (now += 500) };
    const deps = depsWith(await make(clock), clock);
    await deps.store.claimIdempotencyKey('t1', 'key-1', 'd-slow', hash);
    const submit = submitDeployment(deps, { tenantId: 't1', token: 'tok-t1', body, idempotencyKey: 'key-1' });
    await expect(submit).rejects.toBeInstanceOf(ConflictError);
    await expect(submit).rejects.toThrow(/still being processed/);
    expect(deps.executions.started).toEqual([]);
  });
});
