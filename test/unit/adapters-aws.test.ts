import {
  CreateGrantCommand,
  DecryptCommand,
  EncryptCommand,
  InvalidCiphertextException,
  KMSClient,
  ListGrantsCommand,
  NotFoundException,
  RetireGrantCommand,
  RevokeGrantCommand,
} from '@aws-sdk/client-kms';
import { ECSClient, InvalidParameterException, StopTaskCommand } from '@aws-sdk/client-ecs';
import {
  ExecutionAlreadyExists,
  GetExecutionHistoryCommand,
  InvalidToken,
  SendTaskSuccessCommand,
  SFNClient,
  StartExecutionCommand,
  TaskDoesNotExist,
  TaskTimedOut,
  InvalidOutput,
} from '@aws-sdk/client-sfn';
import { describe, expect, it, vi } from 'vitest';
import { EcsSandboxLauncher } from '../../adapters/aws/ecsSandbox.ts';
import { KmsSecretVault } from '../../adapters/aws/kmsVault.ts';
import { SfnExecutionService, TaskTokenGone } from '../../adapters/aws/sfnExecutions.ts';

/** Real SDK clients with `send` replaced: the adapters are tested at the client boundary. */
const clientConfig = { region: 'eu-west-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } };
const $metadata = {};
const STATE_MACHINE = 'arn:aws:states:eu-west-1:123456789012:stateMachine:ctd-deployment';

function fakeSend<C extends { send: unknown }>(client: C, impl: (command: unknown) => unknown) {
  // send() is overloaded per command; the fake answers whatever the test scripts.
  return vi.spyOn(client as unknown as { send: (c: unknown) => Promise<unknown> }, 'send').mockImplementation(async (c) => impl(c));
}

describe('Class: SfnExecutionService', () => {
  const make = (extra: { consoleBaseUrl?: string } = {}) => {
    const client = new SFNClient(clientConfig);
    return { client, service: new SfnExecutionService({ client, stateMachineArn: STATE_MACHINE, region: 'eu-west-1', ...extra }) };
  };

  describe('Method: start', () => {
    it('names the execution after the deployment and passes the input as JSON', async () => {
      const { client, service } = make();
      const send = fakeSend(client, () => ({ executionArn: 'arn:exec', startDate: new Date() }));
      expect(await service.start('d-1', { deploymentId: 'd-1' })).toEqual({ executionArn: 'arn:exec' });
      const command = send.mock.calls[0]?.[0] as StartExecutionCommand;
      expect(command).toBeInstanceOf(StartExecutionCommand);
      expect(command.input).toEqual({ stateMachineArn: STATE_MACHINE, name: 'd-1', input: '{"deploymentId":"d-1"}' });
    });

    it('answers the existing execution when it was already started', async () => {
      const { client, service } = make();
      fakeSend(client, () => {
        throw new ExecutionAlreadyExists({ message: 'exists', $metadata });
      });
      expect(await service.start('d-1', {})).toEqual({
        executionArn: 'arn:aws:states:eu-west-1:123456789012:execution:ctd-deployment:d-1',
      });
    });
  });

  describe('Method: history', () => {
    it('reads every page and keeps each event’s details', async () => {
      const { client, service } = make();
      const send = fakeSend(client, (c) => {
        const token = (c as GetExecutionHistoryCommand).input.nextToken;
        return token === undefined
          ? {
              events: [{ id: 1, type: 'ExecutionStarted', timestamp: new Date(0), executionStartedEventDetails: { input: '{}' } }],
              nextToken: 'page-2',
            }
          : { events: [{ id: 2, previousEventId: 1, type: 'ExecutionSucceeded', timestamp: new Date(1000) }] };
      });
      expect(await service.history('arn:exec')).toEqual([
        { id: 1, type: 'ExecutionStarted', timestamp: '1970-01-01T00:00:00.000Z', executionStartedEventDetails: { input: '{}' } },
        { id: 2, previousEventId: 1, type: 'ExecutionSucceeded', timestamp: '1970-01-01T00:00:01.000Z' },
      ]);
      expect(send).toHaveBeenCalledTimes(2);
    });
  });

  describe('Method: consoleUrl', () => {
    it('links the AWS console, or the local console when one is configured', () => {
      const arn = 'arn:aws:states:eu-west-1:123456789012:execution:ctd-deployment:d-1';
      expect(make().service.consoleUrl(arn)).toBe(
        `https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1#/v2/executions/details/${arn}`,
      );
      expect(make({ consoleBaseUrl: 'http://127.0.0.1:8080/console/' }).service.consoleUrl(arn)).toBe(
        `http://127.0.0.1:8080/console/executions/${arn}`,
      );
    });
  });

  describe('Method: sendTask*', () => {
    it('sends the output as JSON', async () => {
      const { client, service } = make();
      const send = fakeSend(client, () => ({}));
      await service.sendTaskSuccess('tok', { ok: true });
      await service.sendTaskSuccess('tok', undefined);
      expect((send.mock.calls[0]?.[0] as SendTaskSuccessCommand).input).toEqual({ taskToken: 'tok', output: '{"ok":true}' });
      expect((send.mock.calls[1]?.[0] as SendTaskSuccessCommand).input.output).toBe('{}');
    });

    it.each([TaskTimedOut, InvalidToken, TaskDoesNotExist].map((Exception) => ({ name: Exception.name, Exception })))(
      'throws TaskTokenGone on $name',
      async ({ Exception }) => {
      const { client, service } = make();
      fakeSend(client, () => {
        throw new Exception({ message: 'gone', $metadata });
      });
      const sent = service.sendTaskHeartbeat('secret-token');
      await expect(sent).rejects.toBeInstanceOf(TaskTokenGone);
      await expect(sent).rejects.toMatchObject({ reason: Exception.name });
      await expect(sent).rejects.not.toThrow(/secret-token/);
      },
    );

    it('lets other errors through', async () => {
      const { client, service } = make();
      fakeSend(client, () => {
        throw new InvalidOutput({ message: 'bad output', $metadata });
      });
      await expect(service.sendTaskFailure('tok', 'Ctd.StepFailed', 'exit 1')).rejects.toBeInstanceOf(InvalidOutput);
    });
  });
});

describe('Class: KmsSecretVault', () => {
  const SANDBOX_ROLE = 'arn:aws:iam::123456789012:role/sandbox-task';
  const CLEANUP_ROLE = 'arn:aws:iam::123456789012:role/delete-secrets';
  const grants = { decrypter: SANDBOX_ROLE, retirer: CLEANUP_ROLE };

  // The KMS client has no class for it: the SDK throws a generic service exception with this name.
  const accessDenied = (message: string) => Object.assign(new Error(message), { name: 'AccessDeniedException' });

  /**
   * A stand-in KMS that binds ciphertexts to their key and context, as the real one does, and lets
   * Decrypt through only while a grant constrained to exactly that context lives (no standing Decrypt).
   * `caller` is who calls RetireGrant: only the grant's retiring principal may.
   */
  function fakeKms(caller = CLEANUP_ROLE) {
    const client = new KMSClient(clientConfig);
    const live = new Map<string, { name?: string; ctx: string; retirer?: string; token: string }>();
    let n = 0;
    const send = fakeSend(client, (c) => {
      if (c instanceof CreateGrantCommand) {
        const id = `grant-${++n}`;
        live.set(id, { name: c.input.Name, ctx: JSON.stringify(c.input.Constraints?.EncryptionContextEquals), retirer: c.input.RetiringPrincipal, token: `tok-${n}` });
        return { GrantId: id, GrantToken: `tok-${n}` };
      }
      if (c instanceof EncryptCommand) {
        const sealed = JSON.stringify({ key: c.input.KeyId, ctx: c.input.EncryptionContext, pt: Buffer.from(c.input.Plaintext!).toString() });
        return { CiphertextBlob: Buffer.from(sealed) };
      }
      if (c instanceof DecryptCommand) {
        const { key, ctx, pt } = JSON.parse(Buffer.from(c.input.CiphertextBlob!).toString()) as { key: string; ctx: unknown; pt: string };
        if (key !== c.input.KeyId || JSON.stringify(ctx) !== JSON.stringify(c.input.EncryptionContext)) {
          throw new InvalidCiphertextException({ message: 'context mismatch', $metadata });
        }
        if (![...live.values()].some((g) => g.ctx === JSON.stringify(ctx))) throw accessDenied('no grant');
        return { Plaintext: Buffer.from(pt) };
      }
      if (c instanceof RetireGrantCommand || c instanceof RevokeGrantCommand) {
        const g = live.get(c.input.GrantId!);
        if (!g) throw new NotFoundException({ message: 'no such grant', $metadata });
        if (c instanceof RetireGrantCommand && g.retirer !== caller) throw accessDenied('not the retiring principal');
        live.delete(c.input.GrantId!);
        return {};
      }
      if (c instanceof ListGrantsCommand) {
        // Two pages, so the vault must follow the marker.
        const all = [...live.entries()].map(([GrantId, g]) => ({ GrantId, Name: g.name }));
        return c.input.Marker ? { Grants: all.slice(1), Truncated: false } : { Grants: all.slice(0, 1), Truncated: all.length > 1, NextMarker: 'm' };
      }
      throw new Error('unexpected command');
    });
    return { client, send, live };
  }

  const ctx = { deploymentId: 'd-1', tenantId: 't-1' };

  it('creates the deployment\'s grant before encrypting: Decrypt only, for the sandbox, under exactly this context, retired by cleanup', async () => {
    const { client, send } = fakeKms();
    const vault = new KmsSecretVault({ client, keyId: 'alias/ctd', grants });
    const ciphertext = await vault.encrypt('cloud-token', ctx);
    const [first, second] = send.mock.calls.map((c) => c[0]);
    expect(first).toBeInstanceOf(CreateGrantCommand);
    expect((first as CreateGrantCommand).input).toEqual({
      KeyId: 'alias/ctd',
      Name: 'ctd-d-1',
      GranteePrincipal: SANDBOX_ROLE,
      RetiringPrincipal: CLEANUP_ROLE,
      Operations: ['Decrypt'],
      Constraints: { EncryptionContextEquals: { deploymentId: 'd-1', tenantId: 't-1' } },
    });
    expect(second).toBeInstanceOf(EncryptCommand);
    expect(ciphertext).not.toContain('cloud-token');
  });

  it('round-trips under the same deployment (passing the grant token) and refuses another one', async () => {
    const { client, send } = fakeKms();
    const vault = new KmsSecretVault({ client, keyId: 'alias/ctd', grants });
    const ciphertext = await vault.encrypt('cloud-token', ctx);
    expect(await vault.decrypt(ciphertext, ctx)).toBe('cloud-token');
    const decrypt = send.mock.calls.map((c) => c[0]).find((c) => c instanceof DecryptCommand) as DecryptCommand;
    expect(decrypt.input.GrantTokens).toEqual(['tok-1']);
    await expect(vault.decrypt(ciphertext, { ...ctx, deploymentId: 'd-2' })).rejects.toBeInstanceOf(InvalidCiphertextException);
  });

  it('shred retires the grant named in the ciphertext: the same ciphertext no longer decrypts, and a second shred is fine', async () => {
    const { client, send, live } = fakeKms();
    const vault = new KmsSecretVault({ client, keyId: 'alias/ctd', grants });
    const ciphertext = await vault.encrypt('cloud-token', ctx);
    await vault.shred('d-1', ciphertext);
    expect(live.size).toBe(0);
    expect((send.mock.calls.at(-1)?.[0] as RetireGrantCommand).input).toEqual({ KeyId: 'alias/ctd', GrantId: 'grant-1' });
    await expect(vault.decrypt(ciphertext, ctx)).rejects.toMatchObject({ name: 'AccessDeniedException' });
    await expect(vault.shred('d-1', ciphertext)).resolves.toBeUndefined();
  });

  it('shred without the ciphertext finds the grant by its name across pages, and leaves other deployments\' grants', async () => {
    const { client, live } = fakeKms();
    const vault = new KmsSecretVault({ client, keyId: 'alias/ctd', grants });
    const other = await vault.encrypt('other-token', { deploymentId: 'd-0', tenantId: 't-1' });
    await vault.encrypt('cloud-token', ctx);
    await vault.shred('d-1');
    expect([...live.values()].map((g) => g.name)).toEqual(['ctd-d-0']);
    expect(await vault.decrypt(other, { deploymentId: 'd-0', tenantId: 't-1' })).toBe('other-token');
  });

  it('a caller set to revoke (the safety net, not the retiring principal) revokes', async () => {
    const { client, send, live } = fakeKms('arn:aws:iam::123456789012:role/safety-net');
    const vault = new KmsSecretVault({ client, keyId: 'alias/ctd', grants, shredBy: 'revoke' });
    const ciphertext = await vault.encrypt('cloud-token', ctx);
    await vault.shred('d-1', ciphertext);
    expect(live.size).toBe(0);
    expect(send.mock.calls.at(-1)?.[0]).toBeInstanceOf(RevokeGrantCommand);
    // Retiring from there is refused, as KMS refuses anyone but the retiring principal.
    const again = await vault.encrypt('cloud-token', ctx);
    await expect(new KmsSecretVault({ client, keyId: 'alias/ctd' }).shred('d-1', again)).rejects.toMatchObject({ name: 'AccessDeniedException' });
  });

  it('refuses to encrypt where no grant principals are configured, naming the variables', async () => {
    const { client, send } = fakeKms();
    await expect(new KmsSecretVault({ client, keyId: 'alias/ctd' }).encrypt('cloud-token', ctx)).rejects.toThrow(/CTD_TOKEN_DECRYPTER/);
    expect(send).not.toHaveBeenCalled();
  });
});

describe('Class: EcsSandboxLauncher', () => {
  const make = () => {
    const client = new ECSClient(clientConfig);
    return { client, launcher: new EcsSandboxLauncher({ client, cluster: 'ctd' }) };
  };

  it('stops the task in its cluster with a reason ECS accepts', async () => {
    const { client, launcher } = make();
    const send = fakeSend(client, () => ({ task: { lastStatus: 'STOPPED' } }));
    await launcher.stopTask('arn:task', 'x'.repeat(300));
    const { input } = send.mock.calls[0]?.[0] as StopTaskCommand;
    expect(input).toMatchObject({ cluster: 'ctd', task: 'arn:task' });
    expect(input.reason).toHaveLength(255);
  });

  it('treats a task ECS no longer knows as stopped, and rethrows anything else', async () => {
    const { client, launcher } = make();
    fakeSend(client, () => {
      throw new InvalidParameterException({ message: 'The referenced task was not found.', $metadata });
    });
    await expect(launcher.stopTask('arn:task', 'cancel')).resolves.toBeUndefined();

    fakeSend(client, () => {
      throw new InvalidParameterException({ message: 'Cluster not found.', $metadata });
    });
    await expect(launcher.stopTask('arn:task', 'cancel')).rejects.toBeInstanceOf(InvalidParameterException);
  });
});
