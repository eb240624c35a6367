import { DecryptCommand, EncryptCommand, type KMSClient } from '@aws-sdk/client-kms';
import type { EncryptionContext, SecretVault } from '../../core/ports.ts';

export interface KmsSecretVaultOptions {
  client: KMSClient;
  /** Key id, ARN or alias of the symmetric key that guards user tokens. */
  keyId: string;
}

/**
 * The SecretVault on KMS. The encryption context binds a ciphertext to its deployment and
 * tenant: KMS refuses to decrypt it under any other context, and CloudTrail records the context.
 */
export class KmsSecretVault implements SecretVault {
  constructor(private readonly opts: KmsSecretVaultOptions) {}

  async encrypt(plaintext: string, context: EncryptionContext): Promise<string> {
    const res = await this.opts.client.send(
      new EncryptCommand({
        KeyId: this.opts.keyId,
        Plaintext: Buffer.from(plaintext, 'utf8'),
        EncryptionContext: toContext(context),
      }),
    );
    if (!res.CiphertextBlob) throw new Error('KMS Encrypt answered without a CiphertextBlob');
    return Buffer.from(res.CiphertextBlob).toString('base64');
  }

  /** KeyId is passed on Decrypt too, so a ciphertext made under another key is refused. */
  async decrypt(ciphertext: string, context: EncryptionContext): Promise<string> {
    const res = await this.opts.client.send(
      new DecryptCommand({
        KeyId: this.opts.keyId,
        CiphertextBlob: Buffer.from(ciphertext, 'base64'),
        EncryptionContext: toContext(context),
      }),
    );
    if (!res.Plaintext) throw new Error('KMS Decrypt answered without a Plaintext');
    return Buffer.from(res.Plaintext).toString('utf8');
  }
}

/** Only the two named fields: extra properties on the argument must not change the context. */
function toContext(context: EncryptionContext): Record<string, string> {
  return { deploymentId: context.deploymentId, tenantId: context.tenantId };
}
