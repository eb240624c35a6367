import { Match } from 'aws-cdk-lib/assertions';
import { describe, expect, it } from 'vitest';
import { TABLE } from '../../adapters/aws/table.ts';
import { actionsOf, logicalId, synthCtdStack, type PolicyStatementJson } from './helpers.ts';

const { stack, template } = synthCtdStack();

describe('Construct: DeploymentsTable', () => {
  it('is shaped by TABLE: keys, the tenant index and the TTL attribute', () => {
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: TABLE.partitionKey, KeyType: 'HASH' },
        { AttributeName: TABLE.sortKey, KeyType: 'RANGE' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
      GlobalSecondaryIndexes: [
        Match.objectLike({
          IndexName: TABLE.tenantIndex.name,
          KeySchema: [
            { AttributeName: TABLE.tenantIndex.partitionKey, KeyType: 'HASH' },
            { AttributeName: TABLE.tenantIndex.sortKey, KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'ALL' },
        }),
      ],
      TimeToLiveSpecification: { AttributeName: TABLE.ttlAttribute, Enabled: true },
    });
  });

  it('has point-in-time recovery, is retained and encrypted with its own rotating key', () => {
    template.hasResource('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      Properties: Match.objectLike({
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
        SSESpecification: {
          SSEEnabled: true,
          SSEType: 'KMS',
          KMSMasterKeyId: { 'Fn::GetAtt': [logicalId(stack.data.key), 'Arn'] },
        },
      }),
    });
    template.hasResourceProperties('AWS::KMS::Key', {
      EnableKeyRotation: true,
      Description: Match.stringLikeRegexp('deployments table'),
    });
  });
});

describe('Construct: TokenKey', () => {
  const key = template.toJSON().Resources[logicalId(stack.tokenKey.key)];
  const statements: PolicyStatementJson[] = key.Properties.KeyPolicy.Statement;
  const principalOf = (s: PolicyStatementJson) => JSON.stringify(s.Principal);
  const roleArn = (id: string) => JSON.stringify({ AWS: { 'Fn::GetAtt': [id, 'Arn'] } });
  const contextCondition = {
    'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': ['deploymentId', 'tenantId'] },
    Null: { 'kms:EncryptionContext:deploymentId': 'false', 'kms:EncryptionContext:tenantId': 'false' },
  };

  it('rotates and is retained', () => {
    expect(key.Properties.EnableKeyRotation).toBe(true);
    expect(key.DeletionPolicy).toBe('Retain');
  });

  it('lets only the submit Lambda encrypt, under the deployment/tenant encryption context', () => {
    const encrypting = statements.filter((s) =>
      actionsOf(s).some((a) => /^kms:(Encrypt|GenerateDataKey|ReEncrypt|\*)/.test(a)),
    );
    expect(encrypting).toHaveLength(1);
    expect(principalOf(encrypting[0]!)).toBe(roleArn(logicalId(stack.api.functions.submit.role!)));
    expect(encrypting[0]!.Condition).toEqual(contextCondition);
  });

  it('lets only the sandbox task role decrypt, under the same context', () => {
    const decrypting = statements.filter((s) => actionsOf(s).some((a) => /^kms:(Decrypt|ReEncrypt|\*)/.test(a)));
    expect(decrypting).toHaveLength(1);
    expect(principalOf(decrypting[0]!)).toBe(roleArn(logicalId(stack.sandbox.taskRole)));
    expect(actionsOf(decrypting[0]!)).toEqual(['kms:Decrypt']);
    expect(decrypting[0]!.Condition).toEqual(contextCondition);
  });

  it('gives the account administration only: no grants, so IAM cannot open a second way in', () => {
    const admin = statements.find((s) => s.Sid === 'KeyAdministration')!;
    expect(actionsOf(admin)).not.toContain('kms:CreateGrant');
    expect(actionsOf(admin).filter((a) => /^kms:(\*|Create\*|Encrypt|Decrypt|GenerateDataKey|ReEncrypt)/.test(a))).toEqual([]);
  });

  it('is the key the sandbox and the Lambdas are told to use', () => {
    const keyRef = { Ref: logicalId(stack.tokenKey.key) };
    template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ CTD_KMS_KEY_ID: keyRef }) },
    });
    template.hasResourceProperties('AWS::ECS::TaskDefinition', {
      ContainerDefinitions: [
        Match.objectLike({ Environment: Match.arrayWith([{ Name: 'CTD_KMS_KEY_ID', Value: keyRef }]) }),
      ],
    });
  });
});
