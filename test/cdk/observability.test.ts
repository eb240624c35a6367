import { describe, expect, it } from 'vitest';
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
});
