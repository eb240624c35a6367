import { ArnFormat, Stack } from 'aws-cdk-lib';
import type * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import { acknowledgeClusterTasks } from './nag.ts';

/** Fixed so the API can know the machine's ARN without referencing it (that would be a cycle). */
export const STATE_MACHINE_NAME = 'ctd-deployment';

/**
 * DynamoDB actions by purpose, exactly those the store sends; each function gets the union of
 * the purposes it has. BatchWriteItem carries the store's batched puts (a new deployment, log
 * lines) and deletes (secrets) alike: IAM cannot grant one without the other.
 */
export const TABLE_ACTIONS = {
  read: ['dynamodb:GetItem', 'dynamodb:Query'],
  write: ['dynamodb:PutItem', 'dynamodb:UpdateItem', 'dynamodb:BatchWriteItem'],
  delete: ['dynamodb:DeleteItem'],
} as const;

export type TableAccess = keyof typeof TABLE_ACTIONS;

/**
 * The step runner reads its step and secrets, writes its progress and log lines, and records the
 * cloud resources it creates (dropping a record goes through BatchWriteItem, not DeleteItem).
 */
export const SANDBOX_TABLE_ACCESS: readonly TableAccess[] = ['read', 'write'];

export function stateMachineArn(scope: Construct): string {
  return Stack.of(scope).formatArn({
    service: 'states',
    resource: 'stateMachine',
    resourceName: STATE_MACHINE_NAME,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
}

/** Every execution of the machine (executions are named after deployment ids). */
export function executionsArn(scope: Construct): string {
  return Stack.of(scope).formatArn({
    service: 'states',
    resource: 'execution',
    resourceName: `${STATE_MACHINE_NAME}:*`,
    arnFormat: ArnFormat.COLON_RESOURCE_NAME,
  });
}

/** Answering a `.waitForTaskToken` task: engine functions that release tokens, and sandboxes. */
export function taskResponseStatement(scope: Construct, heartbeat = false): iam.PolicyStatement {
  return new iam.PolicyStatement({
    actions: ['states:SendTaskSuccess', 'states:SendTaskFailure', ...(heartbeat ? ['states:SendTaskHeartbeat'] : [])],
    resources: [stateMachineArn(scope)],
  });
}

/** Stopping sandboxes, only in our cluster. */
function stopTaskStatement(scope: Construct, clusterName: string, clusterArn: string): iam.PolicyStatement {
  return new iam.PolicyStatement({
    actions: ['ecs:StopTask'],
    resources: [
      Stack.of(scope).formatArn({ service: 'ecs', resource: 'task', resourceName: `${clusterName}/*` }),
    ],
    conditions: { ArnEquals: { 'ecs:cluster': clusterArn } },
  });
}

/** What an API or engine handler may do besides its own capabilities: table access, answering task tokens, stopping sandboxes. */
export interface HandlerGrants {
  readonly access: readonly TableAccess[];
  /** Answers `.waitForTaskToken` tasks (its own, or those of the steps it releases, aborts or cancels). */
  readonly answersTasks?: boolean;
  readonly stopsTasks?: boolean;
}

/** What grantHandler needs of the table (DeploymentsTable in data.ts, which imports TABLE_ACTIONS from here: no cycle). */
export interface TableGrants {
  grantAccess(grantee: iam.IGrantable, ...access: TableAccess[]): void;
}

export function grantHandler(fn: lambda.IFunction, grants: HandlerGrants, data: TableGrants, cluster: ecs.ICluster): void {
  if (grants.access.length > 0) data.grantAccess(fn, ...grants.access);
  if (grants.answersTasks) fn.addToRolePolicy(taskResponseStatement(fn));
  if (grants.stopsTasks) {
    fn.addToRolePolicy(stopTaskStatement(fn, cluster.clusterName, cluster.clusterArn));
    acknowledgeClusterTasks(fn.role!, cluster);
  }
}
