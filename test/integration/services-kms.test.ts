import { cp, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CreateGrantCommand,
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  KMSClient,
  ListGrantsCommand,
  RetireGrantCommand,
} from '@aws-sdk/client-kms';
import { KmsSecretVault } from '../../adapters/aws/kmsVault.ts';
import { startLocalKms, TOKENS_KEY_ALIAS, type LocalKms } from '../../local/services/kms.ts';

function client(url: string): KMSClient {
  return new KMSClient({ endpoint: url, region: 'us-east-1', credentials: { accessKeyId: 'local', secretAccessKey: 'local' } });
}

const context = { deploymentId: 'dep-1', purpose: 'token' };

describe('Function: startLocalKms', () => {
  let stateDir: string;
  let kms: LocalKms;
  let kmsClient: KMSClient;

  beforeEach(async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'ctd-kms-'));
    kms = await startLocalKms({ stateDir });
    kmsClient = client(kms.url);
  });

  afterEach(async () => {
    kmsClient.destroy();
    await kms.close();
    await rm(stateDir, { recursive: true, force: true });
  });

  it('round-trips a plaintext under an encryption context without a KeyId on Decrypt', async () => {
    const secret = Buffer.from('cloud-token-123');
    const encrypted = await kmsClient.send(new EncryptCommand({ KeyId: TOKENS_KEY_ALIAS, Plaintext: secret, EncryptionContext: context }));
    expect(encrypted.KeyId).toBe(kms.keyArn);
    expect(Buffer.from(encrypted.CiphertextBlob!).includes(secret)).toBe(false);

    // Key order in the context must not matter.
    const decrypted = await kmsClient.send(
      new DecryptCommand({ CiphertextBlob: encrypted.CiphertextBlob, EncryptionContext: { purpose: 'token', deploymentId: 'dep-1' } }),
    );
    expect(Buffer.from(decrypted.Plaintext!).toString()).toBe('cloud-token-123');
    expect(decrypted.KeyId).toBe(kms.keyArn);
  });

  it('accepts the key id, key ARN and alias as KeyId', async () => {
    for (const keyId of [kms.keyId, kms.keyArn, TOKENS_KEY_ALIAS]) {
      const out = await kmsClient.send(new DescribeKeyCommand({ KeyId: keyId }));
      expect(out.KeyMetadata?.KeyId).toBe(kms.keyId);
      expect(out.KeyMetadata?.Arn).toBe(`arn:aws:kms:us-east-1:000000000000:key/${kms.keyId}`);
    }
    await expect(kmsClient.send(new DescribeKeyCommand({ KeyId: 'alias/nope' }))).rejects.toMatchObject({ name: 'NotFoundException' });
  });

  it('refuses to decrypt with a different or missing encryption context', async () => {
    const { CiphertextBlob } = await kmsClient.send(new EncryptCommand({ KeyId: kms.keyId, Plaintext: Buffer.from('x'), EncryptionContext: context }));
    await expect(
      kmsClient.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: { ...context, deploymentId: 'dep-2' } })),
    ).rejects.toMatchObject({ name: 'InvalidCiphertextException', $metadata: { httpStatusCode: 400 } });
    await expect(kmsClient.send(new DecryptCommand({ CiphertextBlob }))).rejects.toMatchObject({ name: 'InvalidCiphertextException' });
    await expect(kmsClient.send(new DecryptCommand({ CiphertextBlob: Buffer.from('garbage') }))).rejects.toMatchObject({
      name: 'InvalidCiphertextException',
    });
  });

  it('generates data keys whose ciphertext decrypts to the same plaintext', async () => {
    const key = await kmsClient.send(new GenerateDataKeyCommand({ KeyId: TOKENS_KEY_ALIAS, KeySpec: 'AES_256', EncryptionContext: context }));
    expect(key.Plaintext).toHaveLength(32);
    const back = await kmsClient.send(new DecryptCommand({ CiphertextBlob: key.CiphertextBlob, EncryptionContext: context }));
    expect(Buffer.from(back.Plaintext!).equals(Buffer.from(key.Plaintext!))).toBe(true);
  });

  it('keeps the key across a restart on the same state dir', async () => {
    const { CiphertextBlob } = await kmsClient.send(new EncryptCommand({ KeyId: TOKENS_KEY_ALIAS, Plaintext: Buffer.from('persist'), EncryptionContext: context }));
    kmsClient.destroy();
    await kms.close();

    const firstKeyId = kms.keyId;
    kms = await startLocalKms({ stateDir });
    kmsClient = client(kms.url);
    expect(kms.keyId).toBe(firstKeyId);
    const out = await kmsClient.send(new DecryptCommand({ CiphertextBlob, EncryptionContext: context }));
    expect(Buffer.from(out.Plaintext!).toString()).toBe('persist');
  });

  it('stores key material 0600 in a 0700 directory', async () => {
    const dir = join(stateDir, 'kms');
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    const files = await readdir(dir);
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) expect((await stat(join(dir, file))).mode & 0o777).toBe(0o600);
  });

  it('creates, lists and retires grants', async () => {
    const grant = await kmsClient.send(
      new CreateGrantCommand({ KeyId: TOKENS_KEY_ALIAS, GranteePrincipal: 'arn:aws:iam::000000000000:role/runner', Operations: ['Decrypt'], Name: 'dep-1' }),
    );
    expect(grant.GrantId).toBeTruthy();
    expect(grant.GrantToken).toBeTruthy();

    const listed = await kmsClient.send(new ListGrantsCommand({ KeyId: kms.keyId }));
    expect(listed.Grants).toEqual([
      expect.objectContaining({ GrantId: grant.GrantId, Name: 'dep-1', Operations: ['Decrypt'], GranteePrincipal: 'arn:aws:iam::000000000000:role/runner' }),
    ]);

    await kmsClient.send(new RetireGrantCommand({ GrantToken: grant.GrantToken }));
    expect((await kmsClient.send(new ListGrantsCommand({ KeyId: kms.keyId }))).Grants).toEqual([]);
    await expect(kmsClient.send(new RetireGrantCommand({ GrantToken: grant.GrantToken }))).rejects.toMatchObject({
      name: 'InvalidGrantTokenException',
    });
  });

  describe('per-deployment grants (issue 10, item 7): the production vault against the local KMS', () => {
    const grants = { decrypter: 'arn:aws:iam::000000000000:role/sandbox', retirer: 'arn:aws:iam::000000000000:role/cleanup' };
    const ctx = { deploymentId: 'd-00000000000aaaaa', tenantId: 't-1' };

    it('lists the grant with its exact-context constraint and principals, never its material', async () => {
      const vault = new KmsSecretVault({ client: kmsClient, keyId: kms.keyId, grants });
      await vault.encrypt('cloud-token', ctx);
      const listed = await kmsClient.send(new ListGrantsCommand({ KeyId: kms.keyId }));
      expect(listed.Grants).toEqual([
        expect.objectContaining({
          Name: `ctd-${ctx.deploymentId}`,
          GranteePrincipal: grants.decrypter,
          RetiringPrincipal: grants.retirer,
          Operations: ['Decrypt'],
          Constraints: { EncryptionContextEquals: ctx },
        }),
      ]);
      expect(JSON.stringify(listed)).not.toMatch(/material/i);
    });

    it('after shred the ciphertext cannot be decrypted, not even by a new KMS on a copy of the state dir', async () => {
      const vault = new KmsSecretVault({ client: kmsClient, keyId: kms.keyId, grants });
      const other = { deploymentId: 'd-00000000000bbbbb', tenantId: 't-1' };
      const ciphertext = await vault.encrypt('cloud-token', ctx);
      const kept = await vault.encrypt('other-token', other);
      expect(await vault.decrypt(ciphertext, ctx)).toBe('cloud-token');

      await vault.shred(ctx.deploymentId, ciphertext);
      await expect(vault.decrypt(ciphertext, ctx)).rejects.toMatchObject({ name: 'AccessDeniedException' });
      // Another deployment's grant is untouched.
      expect(await vault.decrypt(kept, other)).toBe('other-token');

      // The attacker's view: everything on disk, served by a fresh local KMS.
      const copy = await mkdtemp(join(tmpdir(), 'ctd-kms-copy-'));
      try {
        await cp(stateDir, copy, { recursive: true });
        const again = await startLocalKms({ stateDir: copy });
        const againClient = client(again.url);
        try {
          const copyVault = new KmsSecretVault({ client: againClient, keyId: again.keyId });
          await expect(copyVault.decrypt(ciphertext, ctx)).rejects.toMatchObject({ name: 'AccessDeniedException' });
          expect(await copyVault.decrypt(kept, other)).toBe('other-token');
        } finally {
          againClient.destroy();
          await again.close();
        }
      } finally {
        await rm(copy, { recursive: true, force: true });
      }
      // Shredding again (a retried cleanup, without the ciphertext) is fine.
      await expect(vault.shred(ctx.deploymentId)).resolves.toBeUndefined();
    });

    it('refuses a grant whose context constraint is not a map of strings', async () => {
      await expect(
        kmsClient.send(
          new CreateGrantCommand({
            KeyId: kms.keyId,
            GranteePrincipal: grants.decrypter,
            Operations: ['Decrypt'],
            Constraints: { EncryptionContextEquals: { deploymentId: 7 as unknown as string } },
          }),
        ),
      ).rejects.toMatchObject({ name: 'ValidationException', message: expect.stringMatching(/EncryptionContextEquals/) });
    });
  });
});
