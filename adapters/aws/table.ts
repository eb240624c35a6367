import type { CreateTableCommandInput } from '@aws-sdk/client-dynamodb';

/**
 * The one DynamoDB table, defined once: the CDK stack and the local engine's dynalite
 * both build it from here. Items of a deployment share its partition:
 *   pk = DEP#<id>  sk = META | STEP#<stepId> | FILES | SECRET#token | SECRET#sshkey | LOG#<stepId>#<attempt>#<seq>
 *   pk = IDEMP#<tenant>#<key>  sk = META  (idempotency keys)
 * The tenant index lists a tenant's deployments newest first.
 */
export const TABLE = {
  partitionKey: 'pk',
  sortKey: 'sk',
  tenantIndex: { name: 'byTenant', partitionKey: 'tenantPk', sortKey: 'createdSk' },
  /** Epoch seconds; set on secret and idempotency items as the last-resort deletion. */
  ttlAttribute: 'expiresAt',
} as const;

export function createTableInput(tableName: string): CreateTableCommandInput {
  return {
    TableName: tableName,
    BillingMode: 'PAY_PER_REQUEST',
    AttributeDefinitions: [
      { AttributeName: TABLE.partitionKey, AttributeType: 'S' },
      { AttributeName: TABLE.sortKey, AttributeType: 'S' },
      { AttributeName: TABLE.tenantIndex.partitionKey, AttributeType: 'S' },
      { AttributeName: TABLE.tenantIndex.sortKey, AttributeType: 'S' },
    ],
    KeySchema: [
      { AttributeName: TABLE.partitionKey, KeyType: 'HASH' },
      { AttributeName: TABLE.sortKey, KeyType: 'RANGE' },
    ],
    GlobalSecondaryIndexes: [
      {
        IndexName: TABLE.tenantIndex.name,
        KeySchema: [
          { AttributeName: TABLE.tenantIndex.partitionKey, KeyType: 'HASH' },
          { AttributeName: TABLE.tenantIndex.sortKey, KeyType: 'RANGE' },
        ],
        Projection: { ProjectionType: 'ALL' },
      },
    ],
  };
}
