import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DynamoDeploymentStore } from '../../adapters/aws/dynamoStore.ts';
import { EXECUTION_TIMEOUT_SECONDS, MAX_DEPENDENCY_WAIT_SECONDS, MAX_STEP_TIMEOUT_SECONDS, SECRET_TTL_SECONDS } from '../../core/config/limits.ts';
import { parseDeployment } from '../../core/deployment/validate.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { localDynamoDbClient, startLocalDynamoDb, type LocalDynamoDb } from '../../local/services/dynamodb.ts';
import { memoryDeps } from '../helpers/memoryEngine.ts';

/**
 * Issue 10 item 10: a token written at submit must still be there when the longest legal run
 * reaches its last step. Checked on the local DynamoDB's TTL sweeper with a moved clock.
 */

const ASL = JSON.parse(readFileSync(new URL('../../statemachine/deployment.asl.json', import.meta.url), 'utf8')) as {
  TimeoutSeconds?: number;
  States: Record<string, unknown>;
};

/** Every `TimeoutSeconds` of a state named `name`, wherever it is nested (Map iterators). */
function timeoutsOf(node: unknown, name: string, found: number[] = []): number[] {
  if (node && typeof node === 'object') {
    for (const [key, value] of Object.entries(node)) {
      if (key === name && value && typeof value === 'object' && typeof (value as { TimeoutSeconds?: unknown }).TimeoutSeconds === 'number') {
        found.push((value as { TimeoutSeconds: number }).TimeoutSeconds);
      }
      timeoutsOf(value, name, found);
    }
  }
  return found;
}

const body = (timeoutSeconds?: number) => ({
  name: 'ttl',
  bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
  workflow: { steps: [{ id: 'a', action: 'run', command: 'true', ...(timeoutSeconds !== undefined ? { timeoutSeconds } : {}) }] },
});

describe('secret TTL against the longest legal run', () => {
  it('the limits match what the state machine and the schema enforce', () => {
    expect(timeoutsOf(ASL.States, 'AwaitDependencies')).toEqual([MAX_DEPENDENCY_WAIT_SECONDS]);
    // endings-10 adds the execution-level bound; once it is there it must be this one.
    if (ASL.TimeoutSeconds !== undefined) expect(ASL.TimeoutSeconds).toBe(EXECUTION_TIMEOUT_SECONDS);
    expect(() => parseDeployment(body(MAX_STEP_TIMEOUT_SECONDS))).not.toThrow();
    expect(() => parseDeployment(body(MAX_STEP_TIMEOUT_SECONDS + 1))).toThrow(/timeoutSeconds/);
    // The longest run: one full dependency wait, then a full-length step; the execution bound covers it.
    expect(EXECUTION_TIMEOUT_SECONDS).toBeGreaterThanOrEqual(MAX_DEPENDENCY_WAIT_SECONDS + MAX_STEP_TIMEOUT_SECONDS);
  });

  describe('on the local DynamoDB with its TTL sweeper', () => {
    let stateDir: string;
    let dynamo: LocalDynamoDb;
    let nowMs = 0;
    let store: DynamoDeploymentStore;
    let doc: DynamoDBDocumentClient;

    beforeAll(async () => {
      stateDir = await mkdtemp(join(tmpdir(), 'ctd-secrets10-ttl-'));
      dynamo = await startLocalDynamoDb({ stateDir, tableName: 'ctd-ttl', sweepIntervalSeconds: 0, now: () => nowMs });
      doc = DynamoDBDocumentClient.from(localDynamoDbClient(dynamo.url), { marshallOptions: { removeUndefinedValues: true } });
      store = new DynamoDeploymentStore({ client: doc, tableName: 'ctd-ttl' });
    });
    afterAll(async () => {
      doc?.destroy();
      await dynamo?.close();
      await rm(stateDir, { recursive: true, force: true });
    });

    it('keeps the secrets of a deployment submitted now through the execution bound, and sweeps them after the TTL', async () => {
      const deps = { ...memoryDeps(), store };
      const submittedAt = deps.clock.now();
      const { deploymentId } = await submitDeployment(deps, { tenantId: 't1', token: 'tok-ttl', body: body(MAX_STEP_TIMEOUT_SECONDS) });

      // The last moment a legal run can still ask for its token (its execution times out here).
      nowMs = submittedAt + EXECUTION_TIMEOUT_SECONDS * 1000;
      await dynamo.sweepExpired();
      expect(await store.getSecrets(deploymentId)).toBeDefined();

      // The TTL is the last resort: it does fire once the bound and the margin have passed.
      nowMs = submittedAt + (SECRET_TTL_SECONDS + 60) * 1000;
      expect(await dynamo.sweepExpired()).toBeGreaterThan(0);
      expect(await store.getSecrets(deploymentId)).toBeUndefined();
    });
  });
});
