import { Stack, Validations, type CfnElement } from 'aws-cdk-lib';
import type { IConstruct } from 'constructs';

/**
 * Acknowledge one cdk-nag finding on a construct and its children. Call it next to the code that
 * causes the finding, with the reason that code cannot avoid it.
 */
export function acknowledge(scope: IConstruct, id: string, reason: string): void {
  Validations.of(scope).acknowledge({ id, reason });
}

/** The finding id cdk-nag's IAM5 gives a wildcard ARN that embeds a `Ref` to `resource`. */
export function iam5RefFinding(resource: IConstruct, render: (ref: string) => string): string {
  const element = resource.node.defaultChild as CfnElement;
  return `AwsSolutions-IAM5[Resource::${render(`<${Stack.of(element).getLogicalId(element)}>`)}]`;
}

/** ECS task ids are unknown until RunTask; the statement is also bound to the cluster by condition. */
export function acknowledgeClusterTasks(role: IConstruct, cluster: IConstruct): void {
  acknowledge(
    role,
    iam5RefFinding(cluster, (ref) => `arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task/${ref}/*`),
    'Sandbox task ids exist only after RunTask; the wildcard is limited to this cluster\'s tasks and conditioned on ecs:cluster.',
  );
}
