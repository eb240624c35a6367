import {
  CreateGrantCommand,
  DecryptCommand,
  EncryptCommand,
  ListGrantsCommand,
  RetireGrantCommand,
  RevokeGrantCommand,
  type KMSClient,
} from '@aws-sdk/client-kms';
import type { EncryptionContext, SecretVault } from '../../core/ports.ts';

export interface KmsSecretVaultOptions {
  client: KMSClient;
  /** Key id, ARN or alias of the symmetric key that guards user tokens. */
  keyId: string;
  /**
   * Submit only: each deployment's grant lets `decrypter` (the sandbox task role) Decrypt under
   * exactly that deployment's context, and names `retirer` (the DeleteSecrets role) to retire it.
   */
  grants?: { decrypter: string; retirer: string };
  /**
   * `retire` (default): this process is the grants' retiring principal (DeleteSecrets). `revoke`:
   * it is allowed RevokeGrant by the key policy instead (the safety net, a failed submit).
   */
  shredBy?: 'retire' | 'revoke';
}

/** Grant names allow [a-zA-Z0-9:/_-]; deployment ids are `d-` + base36/hex. */
export const grantName = (deploymentId: string): string => `ctd-${deploymentId}`;

/** A stored ciphertext: `g1.<grant id>.<grant token>.<KMS blob>` (base64url, base64url, base64). */
const PREFIX = 'g1.';

interface Sealed {
  grantId?: string;
  grantToken?: string;
  blob: Buffer;
}

function pack(grantId: string, grantToken: string, blob: Uint8Array): string {
  const b64u = (s: string) => Buffer.from(s, 'utf8').toString('base64url');
  return `${PREFIX}${b64u(grantId)}.${b64u(grantToken)}.${Buffer.from(blob).toString('base64')}`;
}

/** Plain base64 is a ciphertext from before grants (no grant to name): it still decrypts while the key policy allows. */
function unpack(stored: string): Sealed {
  if (!stored.startsWith(PREFIX)) return { blob: Buffer.from(stored, 'base64') };
  const [grantId = '', grantToken = '', blob = ''] = stored.slice(PREFIX.length).split('.');
  const text = (s: string) => Buffer.from(s, 'base64url').toString('utf8');
  return { grantId: text(grantId), grantToken: text(grantToken), blob: Buffer.from(blob, 'base64') };
}

/**
 * The SecretVault on KMS. The encryption context binds a ciphertext to its deployment and
 * tenant: KMS refuses to decrypt it under any other context, and CloudTrail records the context.
 * No role has a standing Decrypt: the per-deployment grant made here is the only way, and
 * `shred` retires it at cleanup, so a restored backup of the table no longer decrypts.
 */
export class KmsSecretVault implements SecretVault {
  constructor(private readonly opts: KmsSecretVaultOptions) {}

  async encrypt(plaintext: string, context: EncryptionContext): Promise<string> {
    const grants = this.opts.grants;
    if (!grants) throw new Error('this process cannot encrypt tokens: no grant principals are configured (CTD_TOKEN_DECRYPTER, CTD_TOKEN_RETIRER)');
    const encryptionContext = toContext(context);
    // The grant first: a token must never be stored that no grant lets the sandbox decrypt.
    const grant = await this.opts.client.send(
      new CreateGrantCommand({
        KeyId: this.opts.keyId,
        Name: grantName(context.deploymentId),
        GranteePrincipal: grants.decrypter,
        RetiringPrincipal: grants.retirer,
        Operations: ['Decrypt'],
        Constraints: { EncryptionContextEquals: encryptionContext },
      }),
    );
    if (!grant.GrantId || !grant.GrantToken) throw new Error('KMS CreateGrant answered without a GrantId or GrantToken');
    const res = await this.opts.client.send(
      new EncryptCommand({ KeyId: this.opts.keyId, Plaintext: Buffer.from(plaintext, 'utf8'), EncryptionContext: encryptionContext }),
    );
    if (!res.CiphertextBlob) throw new Error('KMS Encrypt answered without a CiphertextBlob');
    return pack(grant.GrantId, grant.GrantToken, res.CiphertextBlob);
  }

  /**
   * KeyId is passed on Decrypt too, so a ciphertext made under another key is refused. The grant
   * token makes a just-created grant usable before it has propagated (KMS grants are eventually consistent).
   */
  async decrypt(ciphertext: string, context: EncryptionContext): Promise<string> {
    const sealed = unpack(ciphertext);
    const res = await this.opts.client.send(
      new DecryptCommand({
        KeyId: this.opts.keyId,
        CiphertextBlob: sealed.blob,
        EncryptionContext: toContext(context),
        ...(sealed.grantToken ? { GrantTokens: [sealed.grantToken] } : {}),
      }),
    );
    if (!res.Plaintext) throw new Error('KMS Decrypt answered without a Plaintext');
    return Buffer.from(res.Plaintext).toString('utf8');
  }

  /** Retires (or revokes, see `shredBy`) the deployment's grant; a grant already gone is success. */
  async shred(deploymentId: string, ciphertext?: string): Promise<void> {
    const known = ciphertext !== undefined ? unpack(ciphertext).grantId : undefined;
    const grantIds = known ? [known] : await this.grantsNamed(grantName(deploymentId));
    for (const grantId of grantIds) {
      const input = { KeyId: this.opts.keyId, GrantId: grantId };
      try {
        if (this.opts.shredBy === 'revoke') await this.opts.client.send(new RevokeGrantCommand(input));
        else await this.opts.client.send(new RetireGrantCommand(input));
      } catch (e) {
        if (!isGone(e)) throw e;
      }
    }
  }

  private async grantsNamed(name: string): Promise<string[]> {
    const ids: string[] = [];
    let marker: string | undefined;
    do {
      const page = await this.opts.client.send(new ListGrantsCommand({ KeyId: this.opts.keyId, ...(marker ? { Marker: marker } : {}) }));
      for (const g of page.Grants ?? []) if (g.Name === name && g.GrantId) ids.push(g.GrantId);
      marker = page.Truncated ? page.NextMarker : undefined;
    } while (marker);
    return ids;
  }
}

/** Retiring twice, or a grant revoked by an administrator, is not an error for shredding. */
function isGone(e: unknown): boolean {
  const name = (e as Error).name;
  return name === 'NotFoundException' || name === 'InvalidGrantIdException' || name === 'InvalidGrantTokenException';
}

/** Only the two named fields: extra properties on the argument must not change the context. */
function toContext(context: EncryptionContext): Record<string, string> {
  return { deploymentId: context.deploymentId, tenantId: context.tenantId };
}
