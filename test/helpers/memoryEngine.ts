import { TaskTokenGoneError } from '../../core/errors.ts';
import type { HistoryEvent } from '../../core/model.ts';
import type { CloudDriver, EncryptionContext, ExecutionService, SandboxLauncher, SecretVault } from '../../core/ports.ts';
import type { RunnerDeps } from '../../sandbox/runner.ts';
import type { EngineDeps } from '../../core/usecases/deps.ts';
import { submitDeployment } from '../../core/usecases/submit.ts';
import { awaitDependencies } from '../../core/usecases/workflow.ts';
import { MemoryDeploymentStore } from '../../adapters/memory/memoryStore.ts';
import { noMetrics } from '../../core/metrics.ts';

/**
 * In-memory ports for unit tests of the use-cases. The vault really binds ciphertexts to their
 * context; the execution service records the task answers and refuses a token answered twice, as
 * Step Functions does.
 */

export class RecordingExecutions implements ExecutionService {
  readonly started: { name: string; input: unknown }[] = [];
  readonly answers = new Map<string, { ok: true; output: unknown } | { ok: false; error: string; cause: string }>();
  async start(name: string, input: unknown) {
    this.started.push({ name, input });
    return { executionArn: `arn:aws:states:us-east-1:000000000000:execution:ctd-deployment:${name}` };
  }
  async history(): Promise<HistoryEvent[]> {
    return [];
  }
  consoleUrl(arn: string) {
    return `https://console.example/${arn}`;
  }
  async sendTaskSuccess(token: string, output: unknown) {
    if (this.answers.has(token)) throw new TaskTokenGoneError('already answered');
    this.answers.set(token, { ok: true, output });
  }
  async sendTaskFailure(token: string, error: string, cause: string) {
    if (this.answers.has(token)) throw new TaskTokenGoneError('already answered');
    this.answers.set(token, { ok: false, error, cause });
  }
  async sendTaskHeartbeat() {}
}

export class ContextBoundVault implements SecretVault {
  /** Deployments whose grant was retired: their ciphertexts no longer decrypt, as with KMS. */
  readonly shredded = new Set<string>();
  async shred(deploymentId: string) {
    this.shredded.add(deploymentId);
  }
  async encrypt(plaintext: string, ctx: EncryptionContext) {
    return Buffer.from(JSON.stringify({ ctx, p: Buffer.from(plaintext).toString('hex') })).toString('base64');
  }
  async decrypt(ciphertext: string, ctx: EncryptionContext) {
    const { ctx: bound, p } = JSON.parse(Buffer.from(ciphertext, 'base64').toString()) as { ctx: EncryptionContext; p: string };
    if (bound.deploymentId !== ctx.deploymentId || bound.tenantId !== ctx.tenantId) throw new Error('InvalidCiphertextException');
    if (this.shredded.has(bound.deploymentId)) throw new Error('AccessDeniedException');
    return Buffer.from(p, 'hex').toString();
  }
}

export class RecordingSandboxes implements SandboxLauncher {
  readonly stopped: string[] = [];
  readonly woken: string[] = [];
  /** Called on each wake, after it is recorded (a test hands it to a runner's Wakes). */
  onWake: (taskArn: string) => void = () => undefined;
  async stopTask(taskArn: string) {
    this.stopped.push(taskArn);
  }
  wake(taskArn: string) {
    this.woken.push(taskArn);
    this.onWake(taskArn);
  }
}

export function memoryDeps(): EngineDeps & { store: MemoryDeploymentStore; executions: RecordingExecutions; sandboxes: RecordingSandboxes } {
  let now = Date.parse('2026-11-26T12:00:00Z');
  const clock = { now: () => (now += 1000) };
  return {
    store: new MemoryDeploymentStore({ clock }),
    vault: new ContextBoundVault(),
    executions: new RecordingExecutions(),
    sandboxes: new RecordingSandboxes(),
    identity: { identify: async (token: string) => (token.startsWith('tok-') ? { tenantId: token.slice(4) } : undefined) },
    clock,
    log: () => undefined,
    metrics: noMetrics,
  };
}

/**
 * bastion-open as its runner records it (start, then success): the workflow's roots wait on it,
 * so a use-case test of the steps after it starts here. Returns nothing; the record is in the store.
 */
export async function bastionOpened(deps: EngineDeps, deploymentId: string): Promise<void> {
  const at = new Date(deps.clock.now()).toISOString();
  await deps.store.applyStepTransition(deploymentId, 'bastion-open', { name: 'start-system', by: 'runner', ifAttempt: 0, fields: { attempt: 1, startedAt: at } });
  await deps.store.applyStepTransition(deploymentId, 'bastion-open', { name: 'system-succeed', by: 'runner', fields: { endedAt: at } });
}

/**
 * A deployment whose step `a` is released and whose step `b` (depending on `a`) is pre-started and waits:
 * both registered their AwaitDependencies token (`await-a`, `await-b`) after bastion-open succeeded.
 * `body` must hold steps `a` and `b` with `b` depending on `a`. Returns the deployment id.
 */
export async function prestartedChain(deps: EngineDeps, body: unknown, token = 'tok-t1-secret-value'): Promise<string> {
  const { deploymentId } = await submitDeployment(deps, { tenantId: 't1', token, body });
  await bastionOpened(deps, deploymentId);
  await awaitDependencies(deps, { deploymentId, stepId: 'a', taskToken: 'await-a' });
  await awaitDependencies(deps, { deploymentId, stepId: 'b', taskToken: 'await-b' });
  return deploymentId;
}

/** A step runner on the memory engine's store, vault and executions, with fast heartbeats; `extra` overrides any of it. */
export function runnerDepsOf(deps: ReturnType<typeof memoryDeps>, extra: Partial<RunnerDeps> = {}): RunnerDeps {
  return {
    store: deps.store,
    vault: deps.vault,
    executions: deps.executions,
    cloud: {} as CloudDriver,
    clock: deps.clock,
    workDir: '/nonexistent',
    timeScale: 1,
    heartbeatMs: 5,
    signal: new AbortController().signal,
    ...extra,
  };
}
