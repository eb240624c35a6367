import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as iam from 'aws-cdk-lib/aws-iam';
import { Construct } from 'constructs';
import { TABLE_ACTIONS, type TableAccess } from './permissions.ts';
import { TABLE } from '../adapters/aws/table.ts';

const TABLE_KEY_READ_ACTIONS = ['kms:Decrypt', 'kms:DescribeKey'];
const TABLE_KEY_WRITE_ACTIONS = [...TABLE_KEY_READ_ACTIONS, 'kms:Encrypt', 'kms:GenerateDataKey'];

/**
 * The deployments table, shaped by `TABLE` (the same definition the local engine uses), encrypted
 * with its own customer-managed key. That key is separate from the token key: every function
 * reaches the table through IAM, while the token key admits exactly two principals.
 */
export class DeploymentsTable extends Construct {
  readonly table: dynamodb.Table;
  readonly key: kms.Key;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.key = new kms.Key(this, 'Key', {
      description: 'CTD Orchestrator: deployments table',
      enableKeyRotation: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    const s = dynamodb.AttributeType.STRING;
    // Table, not TableV2: TableV2 cannot render a customer-managed key in an env-agnostic stack.
    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: TABLE.partitionKey, type: s },
      sortKey: { name: TABLE.sortKey, type: s },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.CUSTOMER_MANAGED,
      encryptionKey: this.key,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      timeToLiveAttribute: TABLE.ttlAttribute,
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: TABLE.tenantIndex.name,
      partitionKey: { name: TABLE.tenantIndex.partitionKey, type: s },
      sortKey: { name: TABLE.tenantIndex.sortKey, type: s },
      projectionType: dynamodb.ProjectionType.ALL,
    });
  }

  /**
   * Table actions for the given purposes on the table and its one index, plus the table key's
   * matching use, and that only through DynamoDB.
   */
  grantAccess(grantee: iam.IGrantable, ...access: TableAccess[]): void {
    const table = this.table.tableArn;
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: access.flatMap((a) => TABLE_ACTIONS[a]),
        resources: [table, `${table}/index/${TABLE.tenantIndex.name}`],
      }),
    );
    const writes = access.some((a) => a !== 'read');
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: writes ? TABLE_KEY_WRITE_ACTIONS : TABLE_KEY_READ_ACTIONS,
        resources: [this.key.keyArn],
        conditions: { StringEquals: { 'kms:ViaService': `dynamodb.${Stack.of(this).region}.amazonaws.com` } },
      }),
    );
  }
}
