import { Duration, Fn, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import * as path from 'node:path';
import type { DeploymentsTable } from './data.ts';
import type { ConfigSection } from '../core/config/schema.ts';
import { ENGINE_LAMBDAS, entryOf, environmentOf } from '../lambdas/catalog.ts';
import { HandlerFunction, REPO_ROOT } from './functions.ts';
import type { SandboxNetwork } from './network.ts';
import { grantHandler, STATE_MACHINE_NAME, stateMachineArn, type HandlerGrants } from './permissions.ts';
import { acknowledge } from './nag.ts';
import type { Sandbox } from './sandbox.ts';

export const ASL_FILE = path.join(REPO_ROOT, 'statemachine/deployment.asl.json');

interface EngineFunctionSpec extends HandlerGrants {
  /** The ASL placeholder naming this function's ARN; absent for functions outside the ASL. */
  readonly substitution?: string;
  readonly config: readonly ConfigSection[];
  readonly startsExecutions?: boolean;
}

/** What each engine handler may do (checked against its calls by iam-usage.test.ts); the ASL placeholder each one fills. */
export const ENGINE_FUNCTIONS = ENGINE_LAMBDAS;

export type EngineFunctionName = keyof typeof ENGINE_FUNCTIONS;

export interface EngineProps {
  readonly data: DeploymentsTable;
  readonly network: SandboxNetwork;
  readonly sandbox: Sandbox;
  /** Every configuration value the stack knows; each function gets those of its sections. */
  readonly values: Record<string, string>;
  readonly logRetention: logs.RetentionDays;
}

/**
 * The deployment state machine from `statemachine/deployment.asl.json`, the Lambdas its tasks
 * call, and the safety net that deletes secrets when an execution dies outside Cleanup.
 */
export class Engine extends Construct {
  readonly functions: Record<EngineFunctionName, lambda.IFunction>;
  readonly stateMachine: sfn.StateMachine;
  readonly substitutions: Record<string, string>;

  constructor(scope: Construct, id: string, props: EngineProps) {
    super(scope, id);
    const { data, network, sandbox } = props;
    const specs: Record<string, EngineFunctionSpec> = ENGINE_FUNCTIONS;

    const fns = {} as Record<EngineFunctionName, lambda.IFunction>;
    for (const [name, spec] of Object.entries(specs)) {
      const { fn } = new HandlerFunction(this, name, {
        entry: entryOf(name as EngineFunctionName),
        environment: environmentOf(spec.config, props.values),
        logRetention: props.logRetention,
      });
      grantHandler(fn, spec, data, sandbox.cluster);
      if (spec.startsExecutions) {
        // By name, not by the construct: the state machine depends on these functions' ARNs.
        fn.addToRolePolicy(new iam.PolicyStatement({ actions: ['states:StartExecution'], resources: [stateMachineArn(this)] }));
      }
      fns[name as EngineFunctionName] = fn;
    }
    this.functions = fns;

    const privateSubnets = network.vpc.selectSubnets(network.subnets);
    this.substitutions = {
      ...Object.fromEntries(
        Object.entries(specs).flatMap(([name, spec]) =>
          spec.substitution ? [[spec.substitution, fns[name as EngineFunctionName].functionArn]] : [],
        ),
      ),
      ClusterArn: sandbox.cluster.clusterArn,
      // The family, not a revision: a `cdk deploy` deregisters the old revision (aws-cdk#24372), and a
      // running execution's next RunTask (CloseBastionAccess included) must still start.
      TaskDefinitionFamily: sandbox.taskDefinition.family,
      SandboxSubnetIds: Fn.join(',', privateSubnets.subnetIds),
      SandboxSecurityGroupIds: Fn.join(',', [network.securityGroup.securityGroupId]),
    };

    const role = new iam.Role(this, 'StateMachineRole', {
      assumedBy: new iam.ServicePrincipal('states.amazonaws.com'),
      description: 'CTD deployment state machine',
    });
    this.stateMachine = new sfn.StateMachine(this, 'StateMachine', {
      stateMachineName: STATE_MACHINE_NAME,
      stateMachineType: sfn.StateMachineType.STANDARD,
      definitionBody: sfn.DefinitionBody.fromFile(ASL_FILE),
      definitionSubstitutions: this.substitutions,
      role,
      tracingEnabled: true,
      logs: {
        destination: new logs.LogGroup(this, 'StateMachineLogs', {
          retention: props.logRetention,
          removalPolicy: RemovalPolicy.DESTROY,
        }),
        level: sfn.LogLevel.ALL,
        includeExecutionData: false,
      },
    });
    this.grantStateMachineRole(role, props);
    acknowledge(
      role,
      `AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:ecs:<AWS::Region>:<AWS::AccountId>:task-definition/${sandbox.taskDefinition.family}:*]`,
      'RunTask names the sandbox family, not a revision, so a deploy during a running execution cannot break it (aws-cdk#24372); the wildcard is the revision number only.',
    );
    acknowledge(
      role,
      'AwsSolutions-IAM5[Resource::*]',
      'Step Functions log delivery (logs:CreateLogDelivery and friends) and X-Ray tracing support no resource-level permissions.',
    );

    // Console stops, timeouts and failures outside Cleanup would otherwise leave secrets behind.
    new events.Rule(this, 'SafetyNetRule', {
      description: 'Run a cleanup-only execution (close the bastion rule, delete the secrets) when an execution ends without running Cleanup',
      eventPattern: {
        source: ['aws.states'],
        detailType: ['Step Functions Execution Status Change'],
        detail: {
          stateMachineArn: [stateMachineArn(this)],
          status: ['FAILED', 'TIMED_OUT', 'ABORTED'],
        },
      },
      targets: [new targets.LambdaFunction(fns.safetyNet, { retryAttempts: 8, maxEventAge: Duration.hours(2) })],
    });

    // Step Functions does not watch a task started with .waitForTaskToken (wellcomecollection/platform#6458):
    // a sandbox that never starts or dies mid-step fails its step from ECS's own STOPPED event.
    new events.Rule(this, 'SandboxStoppedRule', {
      description: 'Fail a step at once when ECS stops its sandbox before it answered',
      eventPattern: {
        source: ['aws.ecs'],
        detailType: ['ECS Task State Change'],
        detail: { clusterArn: [sandbox.cluster.clusterArn], lastStatus: ['STOPPED'] },
      },
      targets: [new targets.LambdaFunction(fns.sandboxStopped, { retryAttempts: 8, maxEventAge: Duration.hours(1) })],
    });
  }

  private grantStateMachineRole(role: iam.Role, props: EngineProps): void {
    const stack = Stack.of(this);
    const { sandbox } = props;
    const invoked = Object.entries(ENGINE_FUNCTIONS as Record<string, EngineFunctionSpec>)
      .filter(([, spec]) => spec.substitution)
      .map(([name]) => this.functions[name as EngineFunctionName].functionArn);
    role.addToPolicy(new iam.PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: invoked }));
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['ecs:RunTask'],
        resources: [taskDefinitionFamilyArn(stack, sandbox.taskDefinition.family)],
        conditions: { ArnEquals: { 'ecs:cluster': sandbox.cluster.clusterArn } },
      }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['iam:PassRole'],
        resources: sandbox.passedRoles.map((r) => r.roleArn),
        conditions: { StringEquals: { 'iam:PassedToService': 'ecs-tasks.amazonaws.com' } },
      }),
    );
    // No ecs:StopTask, ecs:DescribeTasks or events:* on StepFunctionsGetEventsForECSTaskRule: those
    // serve only the `.sync` pattern; this machine uses `.waitForTaskToken`, and cancel and abort stop
    // tasks through their Lambdas.
  }
}

/** Every revision of the family: a deploy registers a new one while executions still run. */
export function taskDefinitionFamilyArn(stack: Stack, family: string): string {
  return stack.formatArn({ service: 'ecs', resource: 'task-definition', resourceName: `${family}:*` });
}
