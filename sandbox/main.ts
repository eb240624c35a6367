import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildStepPorts, engineConfigFromEnv, type StepPorts } from '../adapters/aws/stepPorts.ts';
import { RELEASE_POLL_ENV, RUNNER_READY, TASK_ENV } from '../core/config/names.ts';
import { createTelemetry, logPort, metricsPort } from '../adapters/aws/telemetry.ts';
import { SANDBOX_CONFIG } from '../core/config/schema.ts';
import type { CloudDriver } from '../core/ports.ts';
import { runnerCpu } from './cpuUsage.ts';
import { RELEASE_POLL_MS, runStep } from './runner.ts';
import { idleLimitOf } from './idleLimit.ts';
import { stepUserFromEnv, type StepUser } from './stepUser.ts';
import { readTask } from './stdinTask.ts';
import { Wakes } from './wakes.ts';

/** One Powertools Logger and Metrics for the process; their JSON and EMF lines go to stdout (CloudWatch Logs in AWS, the engine's log locally). */
const telemetry = createTelemetry('sandbox');

/**
 * The sandbox's entry point (the Fargate task's command; a child process in local mode).
 * Its environment carries only ids, the task token and where the services are.
 */
async function main(): Promise<number> {
  // Built from the environment the runner starts with, so a warm local runner has it ready before its
  // task arrives; a bad setting still fails the task, once it has one (a runner dying while warm would orphan it).
  const prepared = settle(() => prepare(process.env));
  // Ready to take a task: the boot's CPU ends here (its last log line reports it, sandbox/cpuUsage.ts).
  const cpuAtReady = process.cpuUsage();
  // Only a runner handed its task on stdin can be woken (the launcher writes to it); a Fargate task only polls.
  const wakes = process.env.CTD_TASK_FROM_STDIN === '1' ? new Wakes() : undefined;
  if (wakes) Object.assign(process.env, await taskFromStdin(wakes));
  const env = process.env;
  const ids = {
    deploymentId: required('CTD_DEPLOYMENT_ID'),
    stepId: required('CTD_STEP_ID'),
    taskToken: required('CTD_TASK_TOKEN'),
    taskArn: env.CTD_TASK_ARN ?? (await ecsTaskArn()),
  };
  if (prepared instanceof Error) throw prepared;
  const { ports, stepUser } = prepared;
  // The deployment id is the correlation id of the API, the engine Lambdas and this sandbox alike; never the token.
  telemetry.logger.setCorrelationId(ids.deploymentId);
  telemetry.logger.appendPersistentKeys({ deploymentId: ids.deploymentId, stepId: ids.stepId, taskArn: ids.taskArn });
  const log = logPort(telemetry.logger);
  const stop = new AbortController();
  process.once('SIGTERM', () => stop.abort());
  process.once('SIGINT', () => stop.abort());
  // Locally the engine is our parent: if it dies, so does this step (Fargate tasks are stopped by ECS instead).
  const parent = process.ppid;
  const orphanWatch = setInterval(() => process.ppid !== parent && stop.abort(), 1000);
  orphanWatch.unref();

  const timeScale = Number(env.CTD_TIME_SCALE ?? '1') || 1;
  const idle = idleLimitOf(env[TASK_ENV.release]);
  if (idle.problem) log('no idle limit for this sandbox started ahead', { problem: idle.problem });
  const ownWorkDir = !env.CTD_WORK_DIR;
  const workDir = env.CTD_WORK_DIR ?? (await mkdtemp(join(tmpdir(), 'ctd-step-')));
  try {
    const outcome = await runStep(
      {
        ...ports,
        workDir,
        ...(stepUser ? { stepUser } : {}),
        timeScale,
        releasePollMs: releasePoll(env, timeScale),
        ...(idle.maxIdleSeconds !== undefined ? { maxIdleSeconds: idle.maxIdleSeconds } : {}),
        ...(wakes ? { wakes } : {}),
        signal: stop.signal,
        metrics: metricsPort(telemetry.metrics),
      },
      ids,
    );
    const cpu = runnerCpu(cpuAtReady);
    log(outcome.ok ? 'step succeeded' : 'step failed', outcome.ok ? { cpu } : { error: outcome.error, cpu });
    return outcome.ok ? 0 : 1;
  } finally {
    // The outcome is answered already; what a stopped step's processes still write may make this fail.
    if (ownWorkDir) {
      await rm(workDir, { recursive: true, force: true }).catch((e: unknown) =>
        log('work dir not removed', { error: e }),
      );
    }
    telemetry.metrics.publishStoredMetrics();
  }
}

/** The runner's ports and step user: everything the task's ids and token are not needed for. Reads and decrypts nothing. */
function prepare(env: NodeJS.ProcessEnv): { ports: Omit<StepPorts, 'cloud'> & { cloud: CloudDriver }; stepUser: StepUser | undefined } {
  const config = engineConfigFromEnv(env, 'the sandbox', SANDBOX_CONFIG);
  const stepUser = stepUserFromEnv(env);
  const { cloud, ...ports } = buildStepPorts(config);
  // The sandbox always needs its cloud: a wrong setting fails the start, naming the variable.
  return { ports: { ...ports, cloud: cloud() }, stepUser };
}

function settle<T>(build: () => T): T | Error {
  try {
    return build();
  } catch (e) {
    return e instanceof Error ? e : new Error(String(e));
  }
}

/** The release poll, time-scaled: RELEASE_POLL_MS unless the launcher set CTD_RELEASE_POLL_MS (`first,max`). */
function releasePoll(env: NodeJS.ProcessEnv, timeScale: number): { first: number; max: number } {
  const raw = env[RELEASE_POLL_ENV];
  const [first, max] = raw === undefined ? [RELEASE_POLL_MS.first, RELEASE_POLL_MS.max] : raw.split(',').map(Number);
  if (!(first! > 0 && max! >= first!)) throw new Error(`${RELEASE_POLL_ENV} must be "first,max" in ms with 0 < first <= max, got "${raw}"`);
  // Floors: a tiny time scale must not turn the poll into a busy loop of reads.
  return { first: Math.max(20, first! * timeScale), max: Math.max(50, max! * timeScale) };
}

/**
 * A local sandbox is started ahead of its task, with its modules already loaded; the task's ids and
 * token then arrive as one JSON line on stdin, and every further line is a wake. EOF without a task
 * (the engine went away) ends it.
 */
async function taskFromStdin(wakes: Wakes): Promise<Record<string, string>> {
  // Modules are loaded: the launcher may let the next runner boot (it caps boots at the core count).
  process.stdout.write(`${RUNNER_READY}\n`);
  const task = await readTask(process.stdin, wakes);
  if (!task) process.exit(0);
  return task;
}

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set`);
  return value;
}

/** On Fargate the task's ARN comes from the task metadata endpoint. */
async function ecsTaskArn(): Promise<string> {
  const base = process.env.ECS_CONTAINER_METADATA_URI_V4;
  if (!base) return 'unknown';
  const res = await fetch(`${base}/task`);
  const body = (await res.json()) as { TaskARN?: string };
  return body.TaskARN ?? 'unknown';
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    telemetry.logger.error('runner failed', { error: e });
    process.exit(2);
  },
);
