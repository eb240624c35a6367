import { TASK_ENV } from '../../core/config/names.ts';

/**
 * RunTask's parameters as the state machine passes them to local ECS for one step: the runner
 * container's environment carries the ids and the task token (`token-<stepId>` unless `env` says otherwise).
 */
export function runTaskParameters(stepId: string, env: Record<string, string> = {}) {
  const environment = { [TASK_ENV.deploymentId]: 'd-1', [TASK_ENV.stepId]: stepId, [TASK_ENV.taskToken]: `token-${stepId}`, ...env };
  return {
    Cluster: 'arn:aws:ecs:local:000000000000:cluster/test',
    Overrides: { ContainerOverrides: [{ Name: 'runner', Environment: Object.entries(environment).map(([Name, Value]) => ({ Name, Value })) }] },
  };
}
