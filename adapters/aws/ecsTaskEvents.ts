import { z } from 'zod';
import type { SandboxStop } from '../../core/usecases/sandboxStopped.ts';

/**
 * EventBridge "ECS Task State Change" for a stopped sandbox → the step it ran. The task's ids and
 * token are the environment overrides the state machine gave it (statemachine/deployment.asl.json),
 * which ECS repeats in every task event: the mapping holds even for a task that never started and
 * so never recorded its ARN on the step.
 */

export const ECS_TASK_STATE_CHANGE = 'ECS Task State Change';

const keyValue = z.object({ name: z.string(), value: z.string().optional() });

const detailSchema = z.object({
  taskArn: z.string(),
  clusterArn: z.string().optional(),
  lastStatus: z.string(),
  stopCode: z.string().optional(),
  stoppedReason: z.string().optional(),
  containers: z.array(z.object({ name: z.string(), exitCode: z.number().optional(), reason: z.string().optional() })).default([]),
  overrides: z
    .object({ containerOverrides: z.array(z.object({ name: z.string(), environment: z.array(keyValue).optional() })).default([]) })
    .optional(),
});

export type EcsTaskStateChangeDetail = z.input<typeof detailSchema>;

export interface EcsTaskStateChangeEvent {
  source: 'aws.ecs';
  'detail-type': typeof ECS_TASK_STATE_CHANGE;
  detail: EcsTaskStateChangeDetail;
}

/**
 * The stop of one sandbox, or undefined for an event that is not about a stopped sandbox of ours
 * (another status, a task started without our overrides). A malformed event throws, naming the field.
 */
export function sandboxStopOf(event: { detail?: unknown }, containerName: string): SandboxStop | undefined {
  const parsed = detailSchema.safeParse(event.detail);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`ECS task event: detail.${issue?.path.join('.') ?? ''}: ${issue?.message ?? 'invalid'}`);
  }
  const detail = parsed.data;
  if (detail.lastStatus !== 'STOPPED') return undefined;
  const env = new Map(
    (detail.overrides?.containerOverrides ?? [])
      .filter((c) => c.name === containerName)
      .flatMap((c) => c.environment ?? [])
      .map((e) => [e.name, e.value ?? ''] as const),
  );
  const deploymentId = env.get('CTD_DEPLOYMENT_ID');
  const stepId = env.get('CTD_STEP_ID');
  const taskToken = env.get('CTD_TASK_TOKEN');
  if (!deploymentId || !stepId || !taskToken) return undefined;
  const container = detail.containers.find((c) => c.name === containerName);
  return {
    taskArn: detail.taskArn,
    deploymentId,
    stepId,
    taskToken,
    stoppedReason: detail.stoppedReason ?? '',
    ...(detail.stopCode ? { stopCode: detail.stopCode } : {}),
    ...(container?.exitCode !== undefined ? { exitCode: container.exitCode } : {}),
    ...(container?.reason ? { containerReason: container.reason } : {}),
  };
}
