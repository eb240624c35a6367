import { describe, expect, it } from 'vitest';
import { sandboxStopOf } from '../../adapters/aws/ecsTaskEvents.ts';
import { describeStop } from '../../core/usecases/sandboxStopped.ts';

/** EventBridge's "ECS Task State Change" (shape as in the ECS developer guide's example) → a sandbox stop. */
const env = [
  { name: 'CTD_DEPLOYMENT_ID', value: 'd-1' },
  { name: 'CTD_STEP_ID', value: 'web' },
  { name: 'CTD_TASK_TOKEN', value: 'tok' },
];
const event = (detail: Record<string, unknown>) => ({
  source: 'aws.ecs',
  'detail-type': 'ECS Task State Change',
  detail: {
    clusterArn: 'arn:aws:ecs:eu-central-1:1:cluster/ctd',
    taskArn: 'arn:aws:ecs:eu-central-1:1:task/ctd/abc',
    lastStatus: 'STOPPED',
    desiredStatus: 'STOPPED',
    stopCode: 'EssentialContainerExited',
    stoppedReason: 'Essential container in task exited',
    containers: [{ name: 'runner', exitCode: 137, reason: 'OutOfMemoryError: Container killed due to memory usage', lastStatus: 'STOPPED' }],
    overrides: { containerOverrides: [{ name: 'runner', environment: env }] },
    ...detail,
  },
});

describe('Function: sandboxStopOf', () => {
  it('takes the step and token from the overrides and the reason from the task and its container', () => {
    const stop = sandboxStopOf(event({}), 'runner');
    expect(stop).toEqual({
      taskArn: 'arn:aws:ecs:eu-central-1:1:task/ctd/abc',
      deploymentId: 'd-1',
      stepId: 'web',
      taskToken: 'tok',
      stopCode: 'EssentialContainerExited',
      stoppedReason: 'Essential container in task exited',
      exitCode: 137,
      containerReason: 'OutOfMemoryError: Container killed due to memory usage',
    });
    expect(describeStop(stop!)).toBe(
      'Essential container in task exited (EssentialContainerExited); OutOfMemoryError: Container killed due to memory usage; exit code 137',
    );
  });

  it('ignores tasks that did not stop, and tasks without our overrides', () => {
    expect(sandboxStopOf(event({ lastStatus: 'RUNNING' }), 'runner')).toBeUndefined();
    expect(sandboxStopOf(event({ overrides: { containerOverrides: [] } }), 'runner')).toBeUndefined();
    expect(sandboxStopOf(event({ overrides: { containerOverrides: [{ name: 'other', environment: env }] } }), 'runner')).toBeUndefined();
  });

  it('names the field of a malformed event', () => {
    expect(() => sandboxStopOf(event({ taskArn: 42 }), 'runner')).toThrow(/detail\.taskArn/);
  });
});
