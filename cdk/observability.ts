import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import { TELEMETRY, type TelemetryService } from '../core/config/names.ts';
import { ERROR_TABLE, ErrorName } from '../core/errors.ts';
import { Metric, type MetricName } from '../core/metrics.ts';

export interface ObservabilityProps {
  readonly stateMachine: sfn.StateMachine;
  readonly safetyNet: lambda.IFunction;
  readonly sandboxStopped: lambda.IFunction;
  readonly deleteSecrets: lambda.IFunction;
}

/** One of the engine's EMF metrics (core/metrics.ts) as CloudWatch files it: namespace, and the emitting process's service. */
export function engineMetric(name: MetricName, service: TelemetryService, props: cloudwatch.MetricOptions = {}): cloudwatch.Metric {
  return new cloudwatch.Metric({ namespace: TELEMETRY.namespace, metricName: name, dimensionsMap: { service: TELEMETRY.services[service] }, ...props });
}

/**
 * What the team on call watches: executions that failed or timed out, cleanup that failed (secrets
 * or the bastion rule left behind), the safety net (an execution that ended outside Cleanup), lost
 * sandboxes, and throttling of Lambda, ECS and Step Functions; one dashboard with them and the
 * engine's own metrics.
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
    // The account's state-transition bucket (AWS/States service metric): throttled transitions slow every running deployment.
    const transitionsThrottled = new cloudwatch.Metric({ namespace: 'AWS/States', metricName: 'ThrottledEvents', dimensionsMap: { ServiceMetric: 'StateTransition' }, ...sum });
    atLeastOnce('StateTransitionsThrottled', transitionsThrottled, 'Step Functions throttled state transitions of this account and Region.');
    // ECS has no throttle metric; what the engine sees is a RunTask that still failed after the ASL's jittered retries.
    const launchFailures = engineMetric(Metric.SandboxLaunchFailures, 'engine', sum);
    atLeastOnce(
      'SandboxLaunchFailures',
      launchFailures,
      'RunTask failed after its retries (ECS.ThrottlingException, EC2 throttling as ECS.InvalidParameterException, capacity or vCPU quota as AmazonECS.Unknown): a step never got its sandbox. The step\'s error names which.',
    );
    atLeastOnce(
      'CleanupFailed',
      props.deleteSecrets.metricErrors(sum),
      'DeleteSecrets failed: after its retries the execution ends in Ctd.CleanupFailed and the secrets wait for their 24 h TTL.',
    );
    atLeastOnce(
      'BastionCloseFailed',
      engineMetric(Metric.BastionRulesOpenAfterDeployment, 'engine', sum),
      'A deployment ended with its bastion rule possibly open (bastion-close failed, Ctd.CleanupFailed): delete the rule named in the deployment\'s cause.',
    );

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
        [
          new cloudwatch.GraphWidget({
            title: 'Deployments (engine metrics)',
            left: [
              engineMetric(Metric.DeploymentsStarted, 'api', sum),
              engineMetric(Metric.DeploymentsSucceeded, 'engine', sum),
              engineMetric(Metric.DeploymentsFailed, 'engine', sum),
              engineMetric(Metric.DeploymentsCancelled, 'engine', sum),
            ],
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'Sandboxes: start latency and step duration (p90)',
            left: [engineMetric(Metric.SandboxStartLatency, 'sandbox', { period, statistic: 'p90' })],
            right: ['run', 'ssh', 'ansible', 'provision', 'deprovision'].map((action) =>
              engineMetric(Metric.StepDuration, 'sandbox', { period, statistic: 'p90', label: action }).with({ dimensionsMap: { service: TELEMETRY.services.sandbox, Action: action } }),
            ),
            width: 12,
          }),
        ],
        [
          new cloudwatch.GraphWidget({
            title: 'Throttles and launch failures',
            left: [throttles, transitionsThrottled, launchFailures, engineMetric(Metric.PrestartFallbacks, 'engine', sum)],
            width: 12,
          }),
          new cloudwatch.GraphWidget({
            title: 'Retryable failures by error',
            // The runner counts the failures it classifies; the engine counts lost sandboxes (it learns of them from ECS).
            left: ERROR_TABLE.filter((p) => p.retry).map((p) => {
              const service = p.name === ErrorName.SandboxLost ? 'engine' : 'sandbox';
              return engineMetric(Metric.RetryableFailures, service, { ...sum, label: p.name }).with({ dimensionsMap: { service: TELEMETRY.services[service], ErrorName: p.name } });
            }),
            width: 12,
          }),
        ],
      ],
    });
  }
}
