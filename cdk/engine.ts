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
import { HandlerFunction, REPO_ROOT } from './functions.ts';
import type { SandboxNetwork } from './network.ts';
import { grantHandler, STATE_MACHINE_NAME, stateMachineArn, type HandlerGrants } from './permissions.ts';
import { acknowledge, acknowledgeClusterTasks } from './nag.ts';
import type { Sandbox } from './sandbox.ts';

export const ASL_FILE = path.join(REPO_ROOT, 'statemachine/deployment.asl.json');

interface EngineFunctionSpec extends HandlerGrants {
  /** The ASL placeholder naming this function's ARN; absent for functions outside the ASL. */
  readonly substitution?: string;
}

/** What each engine handler may do (checked against its calls by iam-usage.test.ts); the ASL placeholder each one fills. */
export const ENGINE_FUNCTIONS = {
  prepare: { access: ['read', 'write'], substitution: 'PrepareFunctionArn' },
  awaitDependencies: { access: ['read', 'write'], answersTasks: true, substitution: 'AwaitDependenciesFunctionArn' },
  recordStepResult: { access: ['read', 'write'], answersTasks: true, substitution: 'RecordStepResultFunctionArn' },
  recordStepFailure: { access: ['read', 'write'], answersTasks: true, substitution: 'RecordStepFailureFunctionArn' },
  gracePeriod: { access: ['read', 'write'], answersTasks: true, substitution: 'GracePeriodFunctionArn' },
  abortStragglers: {
    access: ['read', 'write'],
    answersTasks: true,
    stopsTasks: true,
    substitution: 'AbortStragglersFunctionArn',
  },
  summarize: { access: ['read'], substitution: 'SummarizeFunctionArn' },
  deleteSecrets: { access: ['read', 'write'], substitution: 'DeleteSecretsFunctionArn' },
  safetyNet: { access: ['read', 'write'] },
} as const satisfies Record<string, EngineFunctionSpec>;

export type EngineFunctionName = keyof typeof ENGINE_FUNCTIONS;

export interface EngineProps {
  readonly data: DeploymentsTable;
  readonly network: SandboxNetwork;
  readonly sandbox: Sandbox;
  readonly environment: Record<string, string>;
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
        entry: `lambdas/engine/${name}.ts`,
        environment: props.environment,
        logRetention: props.logRetention,
      });
      grantHandler(fn, spec, data, sandbox.cluster);
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
      TaskDefinitionArn: sandbox.taskDefinition.taskDefinitionArn,
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
    acknowledgeClusterTasks(role, sandbox.cluster);
    acknowledge(
      role,
      'AwsSolutions-IAM5[Resource::*]',
      'Step Functions log delivery (logs:CreateLogDelivery and friends) and X-Ray tracing support no resource-level permissions.',
    );

    // Console stops, timeouts and failures outside Cleanup would otherwise leave secrets behind.
    new events.Rule(this, 'SafetyNetRule', {
      description: 'Delete a deployment\'s secrets when its execution ends without running Cleanup',
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
        resources: [sandbox.taskDefinition.taskDefinitionArn],
        conditions: { ArnEquals: { 'ecs:cluster': sandbox.cluster.clusterArn } },
      }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['ecs:StopTask', 'ecs:DescribeTasks'],
        resources: [stack.formatArn({ service: 'ecs', resource: 'task', resourceName: `${sandbox.cluster.clusterName}/*` })],
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
    // The ECS integration's `.sync` pattern keeps this managed rule; granted so a state can move
    // from the callback pattern to `.sync` without a role change.
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['events:PutTargets', 'events:PutRule', 'events:DescribeRule'],
        resources: [
          stack.formatArn({ service: 'events', resource: 'rule', resourceName: 'StepFunctionsGetEventsForECSTaskRule' }),
        ],
      }),
    );
  }
}
