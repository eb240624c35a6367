import { ScanCommand } from '@aws-sdk/lib-dynamodb';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DynamoDeploymentStore } from '../../adapters/aws/dynamoStore.ts';
import { MemoryDeploymentStore } from '../../adapters/memory/memoryStore.ts';
import { ConflictError, ValidationError } from '../../core/errors.ts';
import type { DeploymentRecord, SecretsRecord, StepLogLine, StepRecord } from '../../core/model.ts';
import type { Clock, DeploymentStore } from '../../core/ports.ts';
import { startTestDynamo } from '../helpers/dynalite.ts';

interface Harness {
  store: DeploymentStore;
  /** Every stored item's key (`pk sk`), read from outside the store; only where items exist. */
  itemKeys?: () => Promise<string[]>;
  close(): Promise<void>;
}

const implementations: { name: string; start(clock: Clock): Promise<Harness> }[] = [
  {
    name: 'MemoryDeploymentStore',
    start: async (clock) => ({ store: new MemoryDeploymentStore({ clock }), close: async () => {} }),
  },
  {
    name: 'DynamoDeploymentStore (dynalite)',
    start: async (clock) => {
      const dynamo = await startTestDynamo();
      return {
        store: new DynamoDeploymentStore({ client: dynamo.client, tableName: dynamo.tableName, clock }),
        itemKeys: async () => {
          const { Items = [] } = await dynamo.client.send(new ScanCommand({ TableName: dynamo.tableName, ConsistentRead: true }));
          return Items.map((i) => `${String(i.pk)} ${String(i.sk)}`).sort();
        },
        close: dynamo.close,
      };
    },
  },
];

function deployment(id: string, overrides: Partial<DeploymentRecord> = {}): DeploymentRecord {
  return {
    deploymentId: id,
    tenantId: 'tenant-a',
    name: 'hello',
    status: 'PENDING',
    createdAt: '2030-01-01T00:00:00.000Z',
    updatedAt: '2030-01-01T00:00:00.000Z',
    stepIds: ['build', 'deploy'],
    topology: {
      name: 'hello',
      bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
      networks: [{ name: 'net' }],
      securityGroups: [],
      vms: [{ name: 'vm1', network: 'net', securityGroups: [], image: 'debian-12', flavor: 'm1.small', floatingIp: false }],
      workflow: { steps: [{ id: 'build', action: 'run', command: 'make', dependsOn: [] }] },
    },
    ...overrides,
  };
}

function step(deploymentId: string, stepId: string, overrides: Partial<StepRecord> = {}): StepRecord {
  return {
    deploymentId,
    stepId,
    system: false,
    spec: { id: stepId, action: 'run', command: `echo ${stepId}`, dependsOn: [] },
    dependsOn: [],
    status: 'waiting',
    attempt: 1,
    ...overrides,
  };
}

const secrets: SecretsRecord = {
  tokenCiphertext: 'Y2lwaGVy',
  sshPrivateKeySealed: 'c2VhbGVk',
  sshPublicKey: 'ssh-ed25519 AAAA test',
  expiresAt: 1_900_000_000,
};

function logLine(stepId: string, attempt: number, seq: number): StepLogLine {
  return { stepId, attempt, seq, at: '2030-01-01T00:00:00.000Z', stream: 'stdout', text: `${stepId}/${attempt}/${seq}` };
}

describe.each(implementations)('Class: $name (DeploymentStore contract)', ({ start }) => {
  let harness: Harness;
  let store: DeploymentStore;
  let nowMs: number;
  const clock: Clock = { now: () => nowMs };

  async function createDeployment(d: DeploymentRecord, steps: StepRecord[] = [step(d.deploymentId, 'build')]) {
    await store.create({ deployment: d, steps, files: { 'site.yml': '- hosts: all\n', 'app/main.py': '' }, secrets });
  }

  beforeEach(async () => {
    nowMs = Date.parse('2030-01-01T00:00:00.000Z');
    harness = await start(clock);
    store = harness.store;
  });
  afterEach(async () => {
    await harness.close();
  });

  describe('Method: create', () => {
    it('stores the deployment with its steps, files and secrets', async () => {
      const d = deployment('d-1', { idempotencyKey: undefined });
      const steps = [step('d-1', 'build'), step('d-1', 'deploy', { dependsOn: ['build'] })];
      await createDeployment(d, steps);

      expect(await store.getDeployment('d-1')).toEqual(d);
      expect(await store.getSteps('d-1')).toEqual(steps);
      expect(await store.getStep('d-1', 'deploy')).toEqual(steps[1]);
      expect(await store.getFiles('d-1')).toEqual({ 'site.yml': '- hosts: all\n', 'app/main.py': '' });
      expect(await store.getSecrets('d-1')).toEqual(secrets);
      expect((await store.listDeployments('tenant-a', { limit: 10 })).items).toEqual([d]);
    });

    it('answers undefined or empty for a deployment that does not exist', async () => {
      expect(await store.getDeployment('d-none')).toBeUndefined();
      expect(await store.getStep('d-none', 'build')).toBeUndefined();
      expect(await store.getSteps('d-none')).toEqual([]);
      expect(await store.getFiles('d-none')).toEqual({});
      expect(await store.getSecrets('d-none')).toBeUndefined();
    });

    it('refuses a second deployment with the same id and leaves the first intact', async () => {
      await createDeployment(deployment('d-1'), [step('d-1', 'build')]);
      await expect(createDeployment(deployment('d-1', { name: 'other' }), [step('d-1', 'other')])).rejects.toThrow(
        ConflictError,
      );
      expect((await store.getDeployment('d-1'))?.name).toBe('hello');
      expect((await store.getSteps('d-1')).map((s) => s.stepId)).toEqual(['build']);
    });

    it('reads back all steps of a deployment larger than one query page', async () => {
      const padding = 'x'.repeat(10_000);
      const steps = Array.from({ length: 120 }, (_, i) =>
        step('d-big', `s${String(i).padStart(3, '0')}`, { output: { padding } }),
      );
      await createDeployment(deployment('d-big'), steps);
      const read = await store.getSteps('d-big');
      expect(read.map((s) => s.stepId)).toEqual(steps.map((s) => s.stepId));
    });
  });

  describe('Method: listDeployments', () => {
    beforeEach(async () => {
      for (const [id, tenantId, createdAt] of [
        ['d-a1', 'tenant-a', '2030-01-01T00:00:01.000Z'],
        ['d-a3', 'tenant-a', '2030-01-01T00:00:03.000Z'],
        ['d-b1', 'tenant-b', '2030-01-01T00:00:02.000Z'],
        ['d-a2', 'tenant-a', '2030-01-01T00:00:02.000Z'],
      ] as const) {
        await createDeployment(deployment(id, { tenantId, createdAt }));
      }
    });

    it('lists only the tenant’s deployments, newest first, a page at a time', async () => {
      const first = await store.listDeployments('tenant-a', { limit: 2 });
      expect(first.items.map((d) => d.deploymentId)).toEqual(['d-a3', 'd-a2']);
      expect(first.nextCursor).toEqual(expect.any(String));

      const second = await store.listDeployments('tenant-a', { limit: 2, cursor: first.nextCursor! });
      expect(second.items.map((d) => d.deploymentId)).toEqual(['d-a1']);
      expect(second.nextCursor).toBeUndefined();

      const other = await store.listDeployments('tenant-b', { limit: 10 });
      expect(other.items.map((d) => d.deploymentId)).toEqual(['d-b1']);
      expect(other.nextCursor).toBeUndefined();
    });

    it('gives no cursor when the last page is exactly full', async () => {
      const page = await store.listDeployments('tenant-a', { limit: 3 });
      expect(page.items).toHaveLength(3);
      expect(page.nextCursor).toBeUndefined();
    });

    it.each([
      ['garbage', 'not a cursor!'],
      ['JSON of the wrong shape', Buffer.from('{"x":1}').toString('base64url')],
      ['an array', Buffer.from('[]').toString('base64url')],
    ])('rejects %s as a cursor with a ValidationError', async (_label, cursor) => {
      await expect(store.listDeployments('tenant-a', { limit: 2, cursor })).rejects.toThrow(ValidationError);
    });

    it('rejects a cursor of the right shape whose key is oversized', async () => {
      const { nextCursor } = await store.listDeployments('tenant-a', { limit: 1 });
      const decoded = Buffer.from(nextCursor!, 'base64url').toString('utf8');
      const id = (await store.listDeployments('tenant-a', { limit: 1 })).items[0]!.deploymentId;
      const forged = Buffer.from(decoded.split(id).join(`d-${'x'.repeat(3000)}`)).toString('base64url');
      await expect(store.listDeployments('tenant-a', { limit: 1, cursor: forged })).rejects.toThrow(ValidationError);
    });

    it('rejects another tenant’s cursor', async () => {
      const { nextCursor } = await store.listDeployments('tenant-a', { limit: 1 });
      await expect(store.listDeployments('tenant-b', { limit: 1, cursor: nextCursor! })).rejects.toThrow(
        ValidationError,
      );
    });
  });

  describe('Method: updateDeployment', () => {
    beforeEach(async () => {
      await createDeployment(deployment('d-1', { error: 'first cause' }));
    });

    it('updates only from one of the given statuses', async () => {
      expect(await store.updateDeployment('d-1', { name: 'renamed' }, { ifStatus: ['PENDING'] })).toBe(true);
      expect(await store.updateDeployment('d-1', { name: 'again' }, { ifStatus: ['RUNNING', 'CANCELLING'] })).toBe(false);
      expect((await store.getDeployment('d-1'))?.name).toBe('renamed');
    });

    it('refuses a status in the patch: statuses move by named transitions only', async () => {
      const patch = { status: 'RUNNING' } as unknown as Parameters<DeploymentStore['updateDeployment']>[1];
      await expect(store.updateDeployment('d-1', patch)).rejects.toThrow(/named transition/);
      expect((await store.getDeployment('d-1'))?.status).toBe('PENDING');
    });

    it('sets a field once with ifAbsent', async () => {
      expect(await store.updateDeployment('d-1', { graceStartedAt: 't1' }, { ifAbsent: 'graceStartedAt' })).toBe(true);
      expect(await store.updateDeployment('d-1', { graceStartedAt: 't2' }, { ifAbsent: 'graceStartedAt' })).toBe(false);
      expect((await store.getDeployment('d-1'))?.graceStartedAt).toBe('t1');
    });

    it('skips undefined values instead of removing the field', async () => {
      expect(await store.updateDeployment('d-1', { cause: 'why', error: undefined })).toBe(true);
      expect(await store.getDeployment('d-1')).toMatchObject({ cause: 'why', error: 'first cause' });
    });

    it('returns false and creates nothing for an unknown deployment', async () => {
      expect(await store.updateDeployment('d-none', { cause: 'why' })).toBe(false);
      expect(await store.getDeployment('d-none')).toBeUndefined();
    });

    it('evaluates the conditions of a patch that sets nothing', async () => {
      expect(await store.updateDeployment('d-1', {}, { ifStatus: ['PENDING'] })).toBe(true);
      expect(await store.updateDeployment('d-1', {}, { ifStatus: ['RUNNING'] })).toBe(false);
      expect(await store.updateDeployment('d-none', {})).toBe(false);
    });

    it('removes cleared fields', async () => {
      await store.updateDeployment('d-1', { graceToken: 'token', executionArn: 'arn' });
      await store.clearDeploymentFields('d-1', ['graceToken', 'error']);
      const d = await store.getDeployment('d-1');
      expect(d).not.toHaveProperty('graceToken');
      expect(d).not.toHaveProperty('error');
      expect(d?.executionArn).toBe('arn');
      await store.clearDeploymentFields('d-none', ['graceToken']);
      expect(await store.getDeployment('d-none')).toBeUndefined();
    });
  });

  describe('Method: claimPrestart', () => {
    beforeEach(async () => {
      await createDeployment(deployment('d-1'));
    });

    it('lets claims side by side take exactly the places below the limit, and a claim given back frees one', async () => {
      const claims = await Promise.all(Array.from({ length: 8 }, () => store.claimPrestart('d-1', 3)));
      expect(claims.filter(Boolean)).toHaveLength(3);
      expect((await store.getDeployment('d-1'))?.prestartClaims).toBe(3);
      // A higher limit (pre-starts finished meanwhile) lets one more through.
      expect(await store.claimPrestart('d-1', 3)).toBe(false);
      expect(await store.claimPrestart('d-1', 4)).toBe(true);
      await store.unclaimPrestart('d-1');
      expect((await store.getDeployment('d-1'))?.prestartClaims).toBe(3);
      expect(await store.claimPrestart('d-1', 4)).toBe(true);
    });

    it('claims nothing once pre-start halted, whatever the room', async () => {
      expect(await store.claimPrestart('d-1', 5)).toBe(true);
      expect(await store.updateDeployment('d-1', { prestartHalted: 'ECS refused a RunTask' }, { ifAbsent: 'prestartHalted' })).toBe(true);
      expect(await store.claimPrestart('d-1', 5)).toBe(false);
      expect((await store.getDeployment('d-1'))?.prestartClaims).toBe(1);
    });

    it('claims nothing and creates nothing for an unknown deployment', async () => {
      expect(await store.claimPrestart('d-none', 5)).toBe(false);
      await store.unclaimPrestart('d-none');
      expect(await store.getDeployment('d-none')).toBeUndefined();
    });
  });

  describe('Method: updateStep', () => {
    beforeEach(async () => {
      await createDeployment(deployment('d-1'), [step('d-1', 'build'), step('d-1', 'deploy')]);
    });

    it('updates only from one of the given statuses and leaves other steps alone', async () => {
      const patch = { startedAt: 't1', awaitToken: 'tok' } as const;
      expect(await store.updateStep('d-1', 'build', patch, { ifStatus: ['waiting'] })).toBe(true);
      expect(await store.updateStep('d-1', 'build', { cause: 'late' }, { ifStatus: ['running'] })).toBe(false);
      expect(await store.getStep('d-1', 'build')).toMatchObject(patch);
      expect(await store.getStep('d-1', 'build')).not.toHaveProperty('cause');
      expect(await store.getStep('d-1', 'deploy')).not.toHaveProperty('awaitToken');
    });

    it('sets a field once with ifAbsent, combined with a status condition', async () => {
      expect(await store.updateStep('d-1', 'build', { prestartedAt: 't1' }, { ifStatus: ['waiting'], ifAbsent: 'prestartedAt' })).toBe(true);
      expect(await store.updateStep('d-1', 'build', { prestartedAt: 't2' }, { ifStatus: ['waiting'], ifAbsent: 'prestartedAt' })).toBe(false);
      expect((await store.getStep('d-1', 'build'))?.prestartedAt).toBe('t1');
      expect(await store.updateStep('d-1', 'deploy', { prestartedAt: 't3' }, { ifStatus: ['running'], ifAbsent: 'prestartedAt' })).toBe(false);
      expect(await store.getStep('d-1', 'deploy')).not.toHaveProperty('prestartedAt');
    });

    it('clears fields in the same conditional write, and only when it applies', async () => {
      await store.updateStep('d-1', 'build', { awaitToken: 'await' });
      expect(await store.updateStep('d-1', 'build', { prestartedAt: 't1' }, { ifStatus: ['running'], clear: ['awaitToken'] })).toBe(false);
      expect((await store.getStep('d-1', 'build'))?.awaitToken).toBe('await');
      expect(await store.updateStep('d-1', 'build', { prestartedAt: 't1' }, { ifStatus: ['waiting'], ifAbsent: 'prestartedAt', clear: ['awaitToken'] })).toBe(true);
      const s = await store.getStep('d-1', 'build');
      expect(s?.prestartedAt).toBe('t1');
      expect(s).not.toHaveProperty('awaitToken');
      await expect(store.updateStep('d-1', 'build', { cause: 'x' }, { clear: ['status'] })).rejects.toThrow(/required/);
    });

    it('stores nested output', async () => {
      const output = { vms: [{ name: 'vm1', address: '10.0.0.5' }], ok: true };
      expect(await store.updateStep('d-1', 'build', { output })).toBe(true);
      expect((await store.getStep('d-1', 'build'))?.output).toEqual(output);
    });

    it('refuses a status in the patch: statuses move by named transitions only', async () => {
      const patch = { status: 'running' } as unknown as Parameters<DeploymentStore['updateStep']>[2];
      await expect(store.updateStep('d-1', 'build', patch)).rejects.toThrow(/named transition/);
      expect((await store.getStep('d-1', 'build'))?.status).toBe('waiting');
    });

    it('returns false and creates nothing for an unknown step', async () => {
      expect(await store.updateStep('d-1', 'nope', { cause: 'why' })).toBe(false);
      expect(await store.getStep('d-1', 'nope')).toBeUndefined();
    });

    it('removes cleared fields', async () => {
      await store.updateStep('d-1', 'build', { taskToken: 'tok', taskArn: 'arn', awaitToken: 'await' });
      await store.clearStepFields('d-1', 'build', ['taskToken', 'awaitToken']);
      const s = await store.getStep('d-1', 'build');
      expect(s).not.toHaveProperty('taskToken');
      expect(s).not.toHaveProperty('awaitToken');
      expect(s?.taskArn).toBe('arn');
    });

    it('refuses to clear a required field', async () => {
      await expect(store.clearStepFields('d-1', 'build', ['status'])).rejects.toThrow(/required/);
      expect((await store.getStep('d-1', 'build'))?.status).toBe('waiting');
    });
  });

  describe('Method: applyStepTransition', () => {
    beforeEach(async () => {
      await createDeployment(deployment('d-1'), [step('d-1', 'build', { awaitToken: 'await' }), step('d-1', 'deploy')]);
    });

    it('moves the status, sets the fields and removes what the transition clears, in one write', async () => {
      expect(await store.applyStepTransition('d-1', 'build', { name: 'release', by: 'lambda', fields: { startedAt: 't1' } })).toEqual({ applied: true });
      await store.updateStep('d-1', 'build', { taskToken: 'tok', taskArn: 'arn' });
      const output = { vms: [{ name: 'vm1' }] };
      expect(await store.applyStepTransition('d-1', 'build', { name: 'succeed', by: 'lambda', fields: { endedAt: 't2', output } })).toEqual({ applied: true });
      const s = await store.getStep('d-1', 'build');
      expect(s).toMatchObject({ status: 'succeeded', startedAt: 't1', endedAt: 't2', output, awaitToken: 'await' });
      expect(s).not.toHaveProperty('taskToken');
      expect(s).not.toHaveProperty('taskArn');
      expect((await store.getStep('d-1', 'deploy'))?.status).toBe('waiting');
    });

    it('refuses a transition from another status with a typed answer naming what it found, and writes nothing', async () => {
      await store.applyStepTransition('d-1', 'build', { name: 'skip', by: 'lambda', fields: { cause: 'first' } });
      const refused = await store.applyStepTransition('d-1', 'build', { name: 'release', by: 'lambda', fields: { startedAt: 't1', cause: 'second' } });
      expect(refused).toEqual({ applied: false, transition: 'release', current: 'skipped' });
      expect(await store.getStep('d-1', 'build')).toMatchObject({ status: 'skipped', cause: 'first' });
      expect(await store.getStep('d-1', 'build')).not.toHaveProperty('startedAt');
    });

    it('lets one of two racing transitions win', async () => {
      const results = await Promise.all([
        store.applyStepTransition('d-1', 'build', { name: 'release', by: 'lambda' }),
        store.applyStepTransition('d-1', 'build', { name: 'cancel-waiting', by: 'cancel' }),
      ]);
      expect(results.filter((r) => r.applied)).toHaveLength(1);
    });

    it('claims an attempt once: a second claim on the same attempt is refused', async () => {
      await store.applyStepTransition('d-1', 'build', { name: 'release', by: 'lambda' });
      const claim = { name: 'start-attempt', by: 'runner', ifAttempt: 1, fields: { attempt: 2 } } as const;
      const [a, b] = await Promise.all([store.applyStepTransition('d-1', 'build', claim), store.applyStepTransition('d-1', 'build', claim)]);
      expect([a.applied, b.applied].sort()).toEqual([false, true]);
      expect((await store.getStep('d-1', 'build'))?.attempt).toBe(2);
    });

    it('answers an unknown step with a refusal and creates nothing', async () => {
      expect(await store.applyStepTransition('d-1', 'nope', { name: 'release', by: 'lambda' })).toEqual({ applied: false, transition: 'release', current: undefined });
      expect(await store.getStep('d-1', 'nope')).toBeUndefined();
    });

    it('throws when a party fires a transition the lifecycle does not give it', async () => {
      await expect(store.applyStepTransition('d-1', 'build', { name: 'release', by: 'runner' })).rejects.toThrow(/may not be fired by runner/);
      expect((await store.getStep('d-1', 'build'))?.status).toBe('waiting');
    });
  });

  describe('Method: applyDeploymentTransition', () => {
    beforeEach(async () => {
      await createDeployment(deployment('d-1'));
    });

    it('moves the deployment along its lifecycle and refuses to leave a final status', async () => {
      expect(await store.applyDeploymentTransition('d-1', { name: 'start', by: 'lambda', fields: { updatedAt: 't1' } })).toEqual({ applied: true });
      expect(await store.applyDeploymentTransition('d-1', { name: 'cancel', by: 'cancel', fields: { cancelledAt: 't2' } })).toEqual({ applied: true });
      expect(await store.applyDeploymentTransition('d-1', { name: 'end-cancelled', by: 'lambda', fields: { endedAt: 't3' } })).toEqual({ applied: true });
      expect(await store.applyDeploymentTransition('d-1', { name: 'execution-ended', by: 'safety-net', fields: { error: 'late' } })).toEqual({
        applied: false,
        transition: 'execution-ended',
        current: 'CANCELLED',
      });
      expect(await store.getDeployment('d-1')).toMatchObject({ status: 'CANCELLED', updatedAt: 't1', cancelledAt: 't2', endedAt: 't3' });
      expect(await store.getDeployment('d-1')).not.toHaveProperty('error');
    });

    it('answers an unknown deployment with a refusal and creates nothing', async () => {
      expect(await store.applyDeploymentTransition('d-none', { name: 'start', by: 'lambda' })).toEqual({ applied: false, transition: 'start', current: undefined });
      expect(await store.getDeployment('d-none')).toBeUndefined();
    });
  });

  describe('Method: deleteSecrets', () => {
    // getSecrets answers undefined when either item is missing, so each item is checked on its own.
    it('removes the token and the SSH key, nothing else', async () => {
      await createDeployment(deployment('d-1'));
      await createDeployment(deployment('d-2'));
      await store.appendLogs('d-1', [logLine('build', 1, 0)]);
      await store.claimIdempotencyKey('tenant-a', 'key-1', 'd-1', 'hash-1');
      const before = await harness.itemKeys?.();
      const kept = async () => ({
        deployment: await store.getDeployment('d-1'),
        steps: await store.getSteps('d-1'),
        files: await store.getFiles('d-1'),
        logs: await store.getLogs('d-1'),
        otherSecrets: await store.getSecrets('d-2'),
      });
      const expected = await kept();
      expect(expected.files).not.toEqual({});
      expect(expected.logs).toHaveLength(1);

      await store.deleteSecrets('d-1');

      expect(await store.getSecrets('d-1')).toBeUndefined();
      expect(await kept()).toEqual(expected);
      expect(await store.claimIdempotencyKey('tenant-a', 'key-1', 'd-3', 'hash-3')).toMatchObject({ claimed: false, deploymentId: 'd-1' });
      if (before) {
        const after = await harness.itemKeys!();
        expect(before.filter((k) => !after.includes(k))).toEqual(['DEP#d-1 SECRET#sshkey', 'DEP#d-1 SECRET#token']);
        expect(after.filter((k) => !before.includes(k))).toEqual([]);
      }
      await store.deleteSecrets('d-1');
      expect(await store.getSecrets('d-1')).toBeUndefined();
    });
  });

  describe('Method: getLogs', () => {
    it('returns lines ordered by step, attempt and sequence, filtered by step', async () => {
      await createDeployment(deployment('d-1'));
      const lines = [
        ...Array.from({ length: 30 }, (_, i) => logLine('a-b', 1, 29 - i)),
        logLine('a', 2, 1),
        logLine('a', 10, 0),
        logLine('a', 1, 100),
        logLine('a', 1, 9),
      ];
      await store.appendLogs('d-1', lines);
      await store.appendLogs('d-1', [{ ...logLine('a', 1, 10), stream: 'stderr', host: 'vm1' }]);

      const all = await store.getLogs('d-1');
      expect(all.map((l) => l.text)).toEqual([
        'a/1/9',
        'a/1/10',
        'a/1/100',
        'a/2/1',
        'a/10/0',
        ...Array.from({ length: 30 }, (_, i) => `a-b/1/${i}`),
      ]);
      expect(all[1]).toEqual({ ...logLine('a', 1, 10), stream: 'stderr', host: 'vm1' });

      const onlyA = await store.getLogs('d-1', { stepId: 'a' });
      expect(onlyA.map((l) => l.text)).toEqual(['a/1/9', 'a/1/10', 'a/1/100', 'a/2/1', 'a/10/0']);
      expect(await store.getLogs('d-1', { stepId: 'a-b' })).toHaveLength(30);
      expect(await store.getLogs('d-other')).toEqual([]);
    });
  });

  describe('Method: claimIdempotencyKey', () => {
    it('hands the key to the first claimant and names it to the next', async () => {
      expect(await store.claimIdempotencyKey('tenant-a', 'key-1', 'd-1', 'hash-1')).toEqual({ claimed: true });
      const claimedAt = nowMs;
      expect(await store.claimIdempotencyKey('tenant-a', 'key-1', 'd-2', 'hash-2')).toEqual({
        claimed: false,
        deploymentId: 'd-1',
        requestHash: 'hash-1',
        claimedAt,
      });
    });

    it('keeps keys apart per tenant', async () => {
      expect(await store.claimIdempotencyKey('tenant-a', 'key-1', 'd-1', 'h')).toEqual({ claimed: true });
      expect(await store.claimIdempotencyKey('tenant-b', 'key-1', 'd-2', 'h')).toEqual({ claimed: true });
      expect(await store.claimIdempotencyKey('tenant-a#key', '1', 'd-3', 'h')).toEqual({ claimed: true });
    });

    it('releases a key only for its holder: a late release never frees a newer claim', async () => {
      await store.claimIdempotencyKey('tenant-a', 'key-1', 'd-1', 'h');
      await store.releaseIdempotencyKey('tenant-a', 'key-1', 'd-9');
      expect(await store.claimIdempotencyKey('tenant-a', 'key-1', 'd-2', 'h')).toMatchObject({ claimed: false, deploymentId: 'd-1' });
      await store.releaseIdempotencyKey('tenant-b', 'never-claimed', 'd-1');
    });

    it('frees the key on release and after 24 hours', async () => {
      await store.claimIdempotencyKey('tenant-a', 'key-1', 'd-1', 'h');
      await store.releaseIdempotencyKey('tenant-a', 'key-1', 'd-1');
      expect(await store.claimIdempotencyKey('tenant-a', 'key-1', 'd-2', 'h')).toEqual({ claimed: true });

      nowMs += 23 * 3600_000;
      expect(await store.claimIdempotencyKey('tenant-a', 'key-1', 'd-3', 'h')).toMatchObject({ claimed: false });
      nowMs += 2 * 3600_000;
      expect(await store.claimIdempotencyKey('tenant-a', 'key-1', 'd-3', 'h')).toEqual({ claimed: true });
    });
  });

  describe('Methods: recordCloudResource / listCloudResources / forgetCloudResource', () => {
    const net = { kind: 'network', id: 'n-1', name: 'private' };
    const sg = { kind: 'securityGroup', id: 'sg-1', name: 'web' };
    const server = { kind: 'server', id: 's-1', name: 'web1' };

    it('lists what was recorded, in the order it was recorded, per deployment', async () => {
      await createDeployment(deployment('d-1'));
      await createDeployment(deployment('d-2'));
      await store.recordCloudResource('d-1', server);
      await store.recordCloudResource('d-1', net);
      await store.recordCloudResource('d-1', sg);
      await store.recordCloudResource('d-2', { kind: 'network', id: 'n-9', name: 'other' });
      expect(await store.listCloudResources('d-1')).toEqual([server, net, sg]);
      expect(await store.listCloudResources('d-2')).toEqual([{ kind: 'network', id: 'n-9', name: 'other' }]);
      expect(await store.listCloudResources('d-3')).toEqual([]);
    });

    it('keeps concurrent records apart and one record per resource, in its first place', async () => {
      await createDeployment(deployment('d-1'));
      const refs = Array.from({ length: 20 }, (_, i) => ({ kind: 'securityGroupRule', id: `r-${i}`, name: 'web' }));
      await Promise.all(refs.map((r) => store.recordCloudResource('d-1', r)));
      await store.recordCloudResource('d-1', refs[0]!);
      const listed = await store.listCloudResources('d-1');
      expect(listed).toHaveLength(20);
      expect(new Set(listed.map((r) => r.id))).toEqual(new Set(refs.map((r) => r.id)));
    });

    it('re-recording an adopted resource does not move it after later ones', async () => {
      await createDeployment(deployment('d-1'));
      await store.recordCloudResource('d-1', net);
      nowMs += 1000;
      await store.recordCloudResource('d-1', sg);
      nowMs += 1000;
      await store.recordCloudResource('d-1', net);
      expect(await store.listCloudResources('d-1')).toEqual([net, sg]);
    });

    it('forgets exactly the one resource; forgetting twice is fine', async () => {
      await createDeployment(deployment('d-1'));
      await store.recordCloudResource('d-1', net);
      await store.recordCloudResource('d-1', { kind: 'subnet', id: 'n-1', name: 'private' });
      await store.forgetCloudResource('d-1', 'network', 'n-1');
      await store.forgetCloudResource('d-1', 'network', 'n-1');
      expect(await store.listCloudResources('d-1')).toEqual([{ kind: 'subnet', id: 'n-1', name: 'private' }]);
    });

    it('outlives the secrets, so a clean-up after the deployment still finds its resources', async () => {
      await createDeployment(deployment('d-1'));
      await store.recordCloudResource('d-1', server);
      await store.deleteSecrets('d-1');
      expect(await store.listCloudResources('d-1')).toEqual([server]);
      expect(await store.getLogs('d-1')).toEqual([]);
      expect(await store.getSteps('d-1')).toHaveLength(1);
    });
  });
});
