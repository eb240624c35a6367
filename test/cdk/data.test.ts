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

  it('gives nobody a standing Decrypt: the sandbox decrypts only through a deployment\'s grant (issue 10, item 7)', () => {
    const decrypting = statements.filter((s) => actionsOf(s).some((a) => /^kms:(Decrypt|ReEncrypt|\*)/.test(a)));
    expect(decrypting).toEqual([]);
    // Nor any IAM policy on the token key (the table's own key is another matter: DynamoDB uses it).
    const tokenKeyId = logicalId(stack.tokenKey.key);
    const onTokenKey = Object.values(template.findResources('AWS::IAM::Policy'))
      .flatMap((p) => (p as { Properties: { PolicyDocument: { Statement: PolicyStatementJson[] } } }).Properties.PolicyDocument.Statement)
      .filter((st) => JSON.stringify(st.Resource ?? '').includes(tokenKeyId));
    expect(onTokenKey).toEqual([]);
  });

  it('lets only the submit Lambda create grants, pinned to Decrypt for the sandbox, retired by DeleteSecrets, on one exact context', () => {
    const granting = statements.filter((s) => actionsOf(s).some((a) => /^kms:(CreateGrant|\*)/.test(a)));
    expect(granting).toHaveLength(1);
    expect(principalOf(granting[0]!)).toBe(roleArn(logicalId(stack.api.functions.submit.role!)));
    expect(actionsOf(granting[0]!)).toEqual(['kms:CreateGrant']);
    expect(granting[0]!.Condition).toEqual({
      'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': ['deploymentId', 'tenantId'], 'kms:GrantOperations': ['Decrypt'] },
      Null: contextCondition.Null,
      StringEquals: {
        'kms:GrantConstraintType': 'EncryptionContextEquals',
        'kms:GranteePrincipal': { 'Fn::GetAtt': [logicalId(stack.sandbox.taskRole), 'Arn'] },
        'kms:RetiringPrincipal': { 'Fn::GetAtt': [logicalId(stack.engine.functions.deleteSecrets.role!), 'Arn'] },
      },
      Bool: { 'kms:GrantIsForAWSResource': 'false' },
    });
  });

  it('tells submit whom the grants name, and no other function', () => {
    const submit = template.toJSON().Resources[logicalId(stack.api.functions.submit.node.defaultChild as never)];
    expect(submit.Properties.Environment.Variables).toMatchObject({
      CTD_TOKEN_DECRYPTER: { 'Fn::GetAtt': [logicalId(stack.sandbox.taskRole), 'Arn'] },
      CTD_TOKEN_RETIRER: { 'Fn::GetAtt': [logicalId(stack.engine.functions.deleteSecrets.role!), 'Arn'] },
    });
    const others = Object.values(template.findResources('AWS::Lambda::Function')).filter((f) => f !== submit);
    expect(others.filter((f) => JSON.stringify(f).includes('CTD_TOKEN_'))).toEqual([]);
  });

  it('lets cleanup find grants (it retires as their retiring principal), the safety net and a failed submit find and revoke them; nothing else', () => {
    const shredding = statements.filter((s) => actionsOf(s).some((a) => /^kms:(ListGrants|RevokeGrant|RetireGrant)$/.test(a)) && s.Sid !== 'KeyAdministration');
    expect(shredding.map((s) => [principalOf(s), actionsOf(s)])).toEqual([
      [roleArn(logicalId(stack.api.functions.submit.role!)), ['kms:ListGrants', 'kms:RevokeGrant']],
      [roleArn(logicalId(stack.engine.functions.deleteSecrets.role!)), ['kms:ListGrants']],
      [roleArn(logicalId(stack.engine.functions.safetyNet.role!)), ['kms:ListGrants', 'kms:RevokeGrant']],
    ]);
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
