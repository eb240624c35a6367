import { mkdtemp } from 'node:fs/promises';
import { join } from 'node:path';
import type { DeploymentSpec, StepSpec } from '../../../core/deployment/schema.ts';
import type { DeploymentRecord, StepRecord } from '../../../core/model.ts';
import type { CloudDriver } from '../../../core/ports.ts';
import type { ActionContext, DeploymentKey, StepLogger } from '../../../sandbox/actions/types.ts';
import { TENANT } from './netnsBed.ts';

export interface CapturedLine {
  stream: 'stdout' | 'stderr' | 'engine';
  text: string;
  host?: string;
}

/** A StepLogger that keeps the lines for assertions (and can echo them while debugging). */
export function captureLog(echo = false): StepLogger & { lines: CapturedLine[] } {
  const lines: CapturedLine[] = [];
  return {
    lines,
    line(stream, text, host) {
      lines.push(host === undefined ? { stream, text } : { stream, text, host });
      if (echo) console.log(`[${stream}]${host ? ` ${host}:` : ''} ${text}`);
    },
  };
}

/**
 * The ActionContext the step runner would build, by hand: the engine is not part of these
 * tests, only the action against a real cloud backend.
 */
export async function actionContext(input: {
  spec: DeploymentSpec;
  stepId: string;
  deploymentId: string;
  key: DeploymentKey;
  cloud: CloudDriver;
  /** The user's cloud token (a real one of the local cloud when the driver talks to it). */
  token?: string;
  /** Parent of the sandbox's private work dir (keep it short and inside the bed's state dir). */
  workRoot: string;
  signal?: AbortSignal;
  log?: StepLogger & { lines: CapturedLine[] };
}): Promise<ActionContext & { log: StepLogger & { lines: CapturedLine[] } }> {
  const { files, ...topology } = input.spec;
  const step = input.spec.workflow.steps.find((s) => s.id === input.stepId) as StepSpec | undefined;
  if (!step) throw new Error(`no step ${input.stepId}`);
  const now = new Date().toISOString();
  const deployment: DeploymentRecord = {
    deploymentId: input.deploymentId,
    tenantId: TENANT,
    name: input.spec.name,
    status: 'RUNNING',
    createdAt: now,
    updatedAt: now,
    stepIds: input.spec.workflow.steps.map((s) => s.id),
    topology,
  };
  const stepRecord: StepRecord = {
    deploymentId: input.deploymentId,
    stepId: step.id,
    system: false,
    spec: step,
    dependsOn: step.dependsOn,
    status: 'running',
    attempt: 1,
  };
  return {
    deployment,
    topology,
    step: stepRecord,
    files,
    token: input.token ?? 'token-e2e',
    sshKey: input.key,
    cloud: input.cloud,
    // Steps other than provision create nothing: records are not kept here.
    cloudCtx: { token: input.token ?? 'token-e2e', deploymentId: input.deploymentId, record: async () => undefined, forget: async () => undefined },
    recordedResources: async () => [],
    workDir: await mkdtemp(join(input.workRoot, 'w-')),
    log: input.log ?? captureLog(),
    signal: input.signal ?? new AbortController().signal,
    timeScale: 1,
  };
}
