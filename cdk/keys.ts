import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import { Construct } from 'constructs';

/** The encryption context every user token is encrypted under (see the submit use-case). */
export const TOKEN_ENCRYPTION_CONTEXT_KEYS = ['deploymentId', 'tenantId'] as const;

/**
 * Administrative actions only: account principals can manage the token key but never use it.
 * `kms:CreateGrant` is left out on purpose, since a grant would be a second way to decrypt.
 */
const KEY_ADMIN_ACTIONS = [
  'kms:CreateAlias',
  'kms:DeleteAlias',
  'kms:UpdateAlias',
  'kms:Describe*',
  'kms:List*',
  'kms:Get*',
  'kms:Enable*',
  'kms:Disable*',
  'kms:PutKeyPolicy',
  'kms:UpdateKeyDescription',
  'kms:RevokeGrant',
  'kms:RetireGrant',
  'kms:RotateKeyOnDemand',
  'kms:ScheduleKeyDeletion',
  'kms:CancelKeyDeletion',
  'kms:TagResource',
  'kms:UntagResource',
];

/**
 * The context must be exactly {deploymentId, tenantId}: ForAllValues forbids other keys, and
 * the Null checks make both present (ForAllValues alone is true for an empty context).
 */
export function tokenContextConditions(): Record<string, Record<string, unknown>> {
  return {
    'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': [...TOKEN_ENCRYPTION_CONTEXT_KEYS] },
    Null: Object.fromEntries(TOKEN_ENCRYPTION_CONTEXT_KEYS.map((k) => [`kms:EncryptionContext:${k}`, 'false'])),
  };
}

/**
 * The key for users' cloud tokens. Its key policy is the whole authorization: the account root
 * gets administration only, so no IAM policy anywhere can grant encrypt or decrypt. The one
 * encryptor is named in the key policy; nobody has a standing Decrypt: the sandbox decrypts a
 * deployment's token through that deployment's grant, retired at cleanup (docs/ARCHITECTURE.md).
 */
export class TokenKey extends Construct {
  readonly key: kms.Key;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    const policy = new iam.PolicyDocument({
      statements: [
        new iam.PolicyStatement({
          sid: 'KeyAdministration',
          principals: [new iam.AccountRootPrincipal()],
          actions: KEY_ADMIN_ACTIONS,
          resources: ['*'],
        }),
      ],
    });
    this.key = new kms.Key(this, 'Key', {
      description: 'CTD Orchestrator: user cloud tokens (encrypt: submit API only; decrypt: sandbox, per-deployment grant only)',
      enableKeyRotation: true,
      policy,
      pendingWindow: Duration.days(7),
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }

  /**
   * The submit API Lambda: encrypts the token it receives, and first creates that deployment's
   * grant. CreateGrant is pinned: Decrypt only, for the decrypter, retired by the retirer, and
   * constrained to exactly a {deploymentId, tenantId} context (the context keys of a CreateGrant
   * request are those of its constraint).
   */
  allowEncrypt(role: iam.IRole, grants: { decrypter: iam.IRole; retirer: iam.IRole }): void {
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'SubmitEncryptsTokens',
        principals: [new iam.ArnPrincipal(role.roleArn)],
        actions: ['kms:Encrypt'],
        resources: ['*'],
        conditions: tokenContextConditions(),
      }),
    );
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'SubmitGrantsOneDeploymentsDecrypt',
        principals: [new iam.ArnPrincipal(role.roleArn)],
        actions: ['kms:CreateGrant'],
        resources: ['*'],
        conditions: {
          ...tokenContextConditions(),
          StringEquals: {
            'kms:GrantConstraintType': 'EncryptionContextEquals',
            'kms:GranteePrincipal': grants.decrypter.roleArn,
            'kms:RetiringPrincipal': grants.retirer.roleArn,
          },
          'ForAllValues:StringEquals': { ...tokenContextConditions()['ForAllValues:StringEquals'], 'kms:GrantOperations': ['Decrypt'] },
          Bool: { 'kms:GrantIsForAWSResource': 'false' },
        },
      }),
    );
  }

  /**
   * Cleanup (the grants' retiring principal, which needs no policy to retire) and the safety net
   * (which is not, so it revokes) find a deployment's grant by name when its ciphertext is gone.
   */
  allowShred(role: iam.IRole, sid: string, opts: { revoke: boolean }): void {
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid,
        principals: [new iam.ArnPrincipal(role.roleArn)],
        actions: ['kms:ListGrants', ...(opts.revoke ? ['kms:RevokeGrant'] : [])],
        resources: ['*'],
      }),
    );
  }
}
