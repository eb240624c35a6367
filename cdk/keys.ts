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
 * gets administration only, so no IAM policy anywhere can grant encrypt or decrypt; the one
 * encryptor and the one decryptor are named in the key policy.
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
      description: 'CTD Orchestrator: user cloud tokens (encrypt: submit API only; decrypt: sandbox only)',
      enableKeyRotation: true,
      policy,
      pendingWindow: Duration.days(7),
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }

  /** The submit API Lambda: encrypts the token it receives. */
  allowEncrypt(role: iam.IRole): void {
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'SubmitEncryptsTokens',
        principals: [new iam.ArnPrincipal(role.roleArn)],
        actions: ['kms:Encrypt'],
        resources: ['*'],
        conditions: tokenContextConditions(),
      }),
    );
  }

  /** The sandbox task role: the only place a plaintext token ever exists during a run. */
  allowDecrypt(role: iam.IRole): void {
    this.key.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'SandboxDecryptsTokens',
        principals: [new iam.ArnPrincipal(role.roleArn)],
        actions: ['kms:Decrypt'],
        resources: ['*'],
        conditions: tokenContextConditions(),
      }),
    );
  }
}
