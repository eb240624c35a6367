import { describe, expect, it } from 'vitest';
import { TELEMETRY } from '../../core/config/names.ts';
import { Metric } from '../../core/metrics.ts';
import { LAMBDAS } from '../../lambdas/catalog.ts';
import { logicalId, synthCtdStack } from './helpers.ts';

const { stack, template } = synthCtdStack();
const alarms = Object.values(template.findResources('AWS::CloudWatch::Alarm')).map((a) => a.Properties);
const alarmOn = (metric: string, dimension?: unknown) =>
  alarms.filter((a) => a.MetricName === metric && (dimension === undefined || JSON.stringify(a.Dimensions ?? []).includes(JSON.stringify(dimension))));

describe('Construct: Observability', () => {
  it.each([
    ['ExecutionsFailed', 'AWS/States'],
    ['ExecutionsTimedOut', 'AWS/States'],
    ['ExecutionThrottled', 'AWS/States'],
  ])('alarms on the state machine\'s %s at the first occurrence', (metric, namespace) => {
    const [alarm, ...more] = alarmOn(metric, { Ref: logicalId(stack.engine.stateMachine) });
    expect(more).toEqual([]);
    expect(alarm).toMatchObject({ Namespace: namespace, Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold', TreatMissingData: 'notBreaching' });
  });

  it('alarms when the safety net runs and when the lost-sandbox handler fails', () => {
    expect(alarmOn('Invocations', { Ref: logicalId(stack.engine.functions.safetyNet) })).toHaveLength(1);
    expect(alarmOn('Errors', { Ref: logicalId(stack.engine.functions.sandboxStopped) })).toHaveLength(1);
  });

  it('alarms on Lambda throttles and shows everything on one dashboard', () => {
    expect(alarms.filter((a) => a.MetricName === 'Throttles' && a.Namespace === 'AWS/Lambda')).toHaveLength(1);
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });

  it('alarms on throttled Step Functions state transitions of the account', () => {
    expect(alarmOn('ThrottledEvents', { Name: 'ServiceMetric', Value: 'StateTransition' }).filter((a) => a.Namespace === 'AWS/States')).toHaveLength(1);
  });

  it('alarms when DeleteSecrets fails (the execution ends in Ctd.CleanupFailed)', () => {
    expect(alarmOn('Errors', { Ref: logicalId(stack.engine.functions.deleteSecrets) })).toHaveLength(1);
  });

  // The engine's own EMF metrics, exactly as Powertools files them: its namespace, the emitting service as the dimension.
  it.each([
    [Metric.BastionRulesOpenAfterDeployment, 'a bastion-close failure leaves a rule open'],
    [Metric.SandboxLaunchFailures, 'RunTask fails after its retries (ECS throttling, capacity)'],
  ] as const)('alarms on %s: %s', (metric, _why) => {
    const [alarm, ...more] = alarmOn(metric);
    expect(more).toEqual([]);
    expect(alarm).toMatchObject({
      Namespace: TELEMETRY.namespace,
      Dimensions: [{ Name: 'service', Value: TELEMETRY.services.engine }],
      Statistic: 'Sum',
      Threshold: 1,
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      TreatMissingData: 'notBreaching',
    });
  });

  it('pins every alarm the team on call relies on, and no other', () => {
    expect(Object.keys(stack.observability.alarms).sort()).toEqual(
      [
        'BastionCloseFailed',
        'CleanupFailed',
        'ExecutionsFailed',
        'ExecutionsThrottled',
        'ExecutionsTimedOut',
        'LambdaThrottles',
        'SafetyNetInvoked',
        'SandboxLaunchFailures',
        'SandboxesLost',
        'StateTransitionsThrottled',
      ].sort(),
    );
    expect(alarms).toHaveLength(10);
  });

  it('starts every Lambda and the sandbox at the Powertools level of the one config', () => {
    // The catalog's functions are the ones with CTD_ settings (CDK's own helper functions have none).
    const ours = Object.values(template.findResources('AWS::Lambda::Function')).filter((fn) => JSON.stringify(fn.Properties.Environment ?? {}).includes('CTD_'));
    expect(ours).toHaveLength(Object.keys(LAMBDAS).length);
    for (const fn of ours) expect(fn.Properties.Environment.Variables.POWERTOOLS_LOG_LEVEL).toBe(TELEMETRY.logLevel);
    const [taskDef] = Object.values(template.findResources('AWS::ECS::TaskDefinition'));
    expect(taskDef?.Properties.ContainerDefinitions[0].Environment).toContainEqual({ Name: 'POWERTOOLS_LOG_LEVEL', Value: TELEMETRY.logLevel });
  });
});
