import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';

export interface ObservabilityProps {
  readonly stateMachine: sfn.StateMachine;
  readonly safetyNet: lambda.IFunction;
  readonly sandboxStopped: lambda.IFunction;
}

/**
 * What the team on call watches: executions that failed or timed out, the safety net (an execution
 * that ended outside Cleanup), lost sandboxes, and throttled Lambdas; one dashboard with them.
 */
export class Observability extends Construct {
  readonly alarms: Record<string, cloudwatch.Alarm> = {};
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const period = Duration.minutes(5);
    const sum = { period, statistic: cloudwatch.Stats.SUM };
    const atLeastOnce = (name: string, metric: cloudwatch.IMetric, description: string) =>
      (this.alarms[name] = new cloudwatch.Alarm(this, name, {
        metric,
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        alarmDescription: description,
      }));

    atLeastOnce('ExecutionsFailed', props.stateMachine.metricFailed(sum), 'A deployment execution failed (including Ctd.CleanupFailed).');
    atLeastOnce('ExecutionsTimedOut', props.stateMachine.metricTimedOut(sum), 'A deployment execution timed out.');
    atLeastOnce('ExecutionsThrottled', props.stateMachine.metricThrottled(sum), 'Step Functions throttled the deployment state machine.');
    atLeastOnce('SafetyNetInvoked', props.safetyNet.metricInvocations(sum), 'An execution ended outside Cleanup: the safety net deleted its secrets; check its bastion rule.');
    atLeastOnce('SandboxesLost', props.sandboxStopped.metricErrors(sum), 'The handler of stopped sandboxes failed: a lost sandbox may wait for its heartbeat timeout.');
    // Region-wide: an alarm's metric math may use at most 10 metrics, and the stack has more functions.
    const throttles = lambda.Function.metricAllThrottles(sum);
    atLeastOnce('LambdaThrottles', throttles, 'A CTD Lambda was throttled.');

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      widgets: [
        [
          new cloudwatch.GraphWidget({
            title: 'Deployments',
            left: [props.stateMachine.metricStarted(sum), props.stateMachine.metricSucceeded(sum), props.stateMachine.metricFailed(sum), props.stateMachine.metricTimedOut(sum)],
            width: 12,
          }),
          new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: Object.values(this.alarms), width: 12 }),
        ],
        [new cloudwatch.GraphWidget({ title: 'Lambda throttles', left: [throttles], width: 12 })],
      ],
    });
  }
}
