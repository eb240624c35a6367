import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { CtdClient } from '../cli/client.ts';
import type { DeploymentView, HistoryResponse } from '../core/api.ts';
import { startLocalEngine, type LocalEngine, type LocalEngineOptions } from '../local/engine.ts';
import { containerEnvironment } from '../local/sandbox/launcher.ts';
import { LocalStepFunctions } from '../local/sfn/index.ts';

/**
 * What the benchmarks share: one embedded engine on a temp state dir and its own loopback block
 * (as test/helpers/engine.ts does), probes on the engine's task boundaries, and the machine's
 * description. Probes wrap methods of this process's objects only; production code is unchanged.
 */

/** Wall-clock milliseconds with sub-millisecond resolution, comparable to the API's ISO timestamps. */
export const now = (): number => performance.timeOrigin + performance.now();

export interface Machine {
  cpu: string;
  cores: number;
  node: string;
  platform: string;
}

export function machine(): Machine {
  const list = cpus();
  return { cpu: list[0]?.model.trim() ?? 'unknown', cores: list.length, node: process.version, platform: `${process.platform} ${process.arch}` };
}

export type LoadAverage = [number, number, number];

export const loadAverage = (): LoadAverage => {
  const [a = 0, b = 0, c = 0] = loadavg();
  return [round(a, 2), round(b, 2), round(c, 2)];
};

/** Load averages when a measurement started and ended, so a figure can be judged against them. */
export interface LoadStamp {
  start: LoadAverage;
  end: LoadAverage;
}

/**
 * Waits (bounded) until the 1-minute load drops below `threshold`: other engineers' test runs
 * share this machine and a loaded CPU inflates every process start.
 */
export async function waitForCalm(threshold: number, maxWaitMs: number, log: (line: string) => void): Promise<LoadAverage> {
  const deadline = Date.now() + maxWaitMs;
  let load = loadAverage();
  if (load[0] < threshold) return load;
  log(`load ${load[0]} ≥ ${threshold}; waiting up to ${Math.round(maxWaitMs / 1000)} s for a calmer machine`);
  while (Date.now() < deadline) {
    await sleep(Math.min(5000, Math.max(0, deadline - Date.now())));
    load = loadAverage();
    if (load[0] < threshold) break;
  }
  log(`starting at load ${load.join(' ')}`);
  return load;
}

/** CPU seconds (user + system) this process has used so far. */
export function cpuSeconds(): number {
  const own = process.cpuUsage();
  return (own.user + own.system) / 1e6;
}

/** The machine's CPU seconds since boot from /proc/stat: busy (user, nice, system, irq, softirq, steal) and idle (idle, iowait). */
export function machineCpuSeconds(): { busy: number; idle: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = line.trim().split(/\s+/).slice(1).map(Number);
    // USER_HZ is 100 on Linux; guest time is already inside user.
    return { busy: (user + nice + system + irq + softirq + steal) / 100, idle: (idle + iowait) / 100 };
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) of one live process from /proc/<pid>/stat, its ended children not included. */
export function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** What a runner's last log line says it cost (sandbox/cpuUsage.ts), by deployment and step. */
export interface RunnerCpuReport {
  deploymentId: string;
  stepId: string;
  bootMs: number;
  afterReadyMs: number;
  childrenMs?: number;
}

/** The runner's final JSON log line(s) in an engine log line (`[stepId] {…}`), if they carry its CPU. */
export function runnerCpuReports(line: string): RunnerCpuReport[] {
  const reports: RunnerCpuReport[] = [];
  for (const text of line.split('\n')) {
    const at = text.indexOf('{"');
    if (at < 0 || !text.includes('"cpu":')) continue;
    try {
      const entry = JSON.parse(text.slice(at)) as { deploymentId?: unknown; stepId?: unknown; cpu?: { bootMs?: unknown; afterReadyMs?: unknown; childrenMs?: unknown } };
      const { cpu } = entry;
      if (typeof entry.deploymentId !== 'string' || typeof entry.stepId !== 'string' || typeof cpu?.bootMs !== 'number' || typeof cpu.afterReadyMs !== 'number') continue;
      reports.push({
        deploymentId: entry.deploymentId,
        stepId: entry.stepId,
        bootMs: cpu.bootMs,
        afterReadyMs: cpu.afterReadyMs,
        ...(typeof cpu.childrenMs === 'number' ? { childrenMs: cpu.childrenMs } : {}),
      });
    } catch {
      // Not a runner's JSON line.
    }
  }
  return reports;
}

/** One sandbox attempt as the probes saw it. Times are {@link now} values. */
export interface TaskTrace {
  deploymentId: string;
  stepId: string;
  bwrap: boolean;
  runTaskAt: number;
  /** The runner process this task got: when the launcher was asked for it, spawned it (after its boot slot) and heard it ready (modules loaded). */
  runner?: RunnerTrace;
  firstHeartbeatAt?: number;
  successAt?: number;
}

export interface RunnerTrace {
  askedAt: number;
  spawnedAt: number;
  /** It said RUNNER_READY: modules loaded and ports built, waiting for its task. */
  readyAt?: number;
  /** Whether it runs inside bwrap (read from the spawned command, not from the choice). */
  bwrap: boolean;
}

/** The launcher's private parts the probes use: its spawn (one runner, warm or on demand), isolation and options. */
interface LauncherInternals {
  /** `first`: a system step's runner, queued ahead of the others for a boot slot. */
  spawn(first?: boolean): Promise<{ id: string; command: string }>;
  /** Called when a runner said RUNNER_READY (or its boot slot timed out); `ready` is still false on the first call. */
  markReady(sandbox: { id: string; ready: boolean }): void;
  bwrap: string | undefined;
  opts: { warm?: number };
}

export interface BenchEngine {
  engine: LocalEngine;
  client: CtdClient;
  bastionAddress: string;
  /** bwrap's path when the launcher isolates sandboxes with it, else undefined. */
  bwrapPath: string | undefined;
  /** Every sandbox attempt of this engine, in RunTask order. */
  traces: TaskTrace[];
  /** What each runner that ended said its life cost in CPU, in the order they ended. */
  runnerCpu: RunnerCpuReport[];
  /** The pid of the process that forks the runners, if it runs. */
  spawnerPid(): number | undefined;
  /** Decides, per runner spawned from now on (numbered from 1), whether it starts inside bwrap (default: the engine's choice). */
  setIsolation(choose: ((runnerNo: number) => boolean) | undefined): void;
  /** How many runners the launcher keeps started ahead of need (its default is 2; 0 spawns each at its RunTask). */
  setWarmRunners(count: number | undefined): void;
  waitForEnd(deploymentId: string, timeoutMs: number): Promise<DeploymentView>;
  history(deploymentId: string): Promise<HistoryResponse>;
  /** The engine's last log lines, for a failure message. */
  tail(lines?: number): string;
  stop(): Promise<void>;
}

const FINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

/** Engine settings a benchmark varies (start latency, pre-start, time scale); default: the demo's. */
export type BenchEngineOptions = Pick<LocalEngineOptions, 'timeScale' | 'sandboxStartLatency' | 'prestart'>;

export async function startBenchEngine(options: BenchEngineOptions = {}): Promise<BenchEngine> {
  const stateDir = await mkdtemp(join(tmpdir(), 'ctd-bench-'));
  const lines: string[] = [];
  const runnerCpu: RunnerCpuReport[] = [];
  let engine: LocalEngine;
  try {
    engine = await startLocalEngine({
      ...options,
      stateDir,
      apiPort: 0,
      log: (line) => {
        if (line.includes('"cpu":')) runnerCpu.push(...runnerCpuReports(line));
        lines.push(line);
        if (lines.length > 400) lines.splice(0, lines.length - 400);
      },
    });
  } catch (e) {
    await rm(stateDir, { recursive: true, force: true });
    throw e;
  }
  const token = await engine.mintToken('bench');
  const client = new CtdClient({ endpoint: engine.apiUrl, token: { get: async () => token } });

  const traces: TaskTrace[] = [];
  const byToken = new Map<string, TaskTrace>();
  const launcher = engine.sandboxes as unknown as LauncherInternals;
  const bwrapPath = launcher.bwrap;
  const defaultWarm = launcher.opts.warm;
  let choose: ((runnerNo: number) => boolean) | undefined;
  let spawned = 0;

  // Every runner's spawn and readiness, by sandbox id (the task ARN's last segment). The launcher reads
  // its isolation after its first await: a per-runner choice holds while runners spawn one at a time
  // (the sandbox benchmark's chain); each trace still reads the runner's real isolation.
  const runners = new Map<string, RunnerTrace>();
  const spawnRunner = launcher.spawn.bind(engine.sandboxes);
  launcher.spawn = async (first) => {
    const askedAt = now();
    const no = ++spawned;
    if (bwrapPath !== undefined && choose) launcher.bwrap = choose(no) ? bwrapPath : undefined;
    let sandbox: Awaited<ReturnType<LauncherInternals['spawn']>>;
    try {
      sandbox = await spawnRunner(first);
    } finally {
      launcher.bwrap = bwrapPath;
    }
    const runner: RunnerTrace = { askedAt, spawnedAt: now(), bwrap: bwrapPath !== undefined && sandbox.command === bwrapPath };
    runners.set(sandbox.id, runner);
    return sandbox;
  };
  // The launcher hears RUNNER_READY on the runner's stdout (relayed by its spawner) and marks the runner ready.
  const markReady = launcher.markReady.bind(engine.sandboxes);
  launcher.markReady = (sandbox) => {
    const runner = runners.get(sandbox.id);
    if (runner && runner.readyAt === undefined && !sandbox.ready) runner.readyAt = now();
    markReady(sandbox);
  };

  const runTask = engine.sandboxes.runTask.bind(engine.sandboxes);
  engine.sandboxes.runTask = async (parameters, signal) => {
    const env = containerEnvironment(parameters);
    // Runners spawned before the probe (the launcher's first warm ones) have the engine's default isolation.
    const trace: TaskTrace = { deploymentId: env.CTD_DEPLOYMENT_ID ?? '?', stepId: env.CTD_STEP_ID ?? '?', bwrap: bwrapPath !== undefined, runTaskAt: now() };
    traces.push(trace);
    if (env.CTD_TASK_TOKEN) byToken.set(env.CTD_TASK_TOKEN, trace);
    const started = await runTask(parameters, signal);
    const runner = runners.get(started.tasks[0]?.taskArn.split('/').pop() ?? '');
    if (runner) Object.assign(trace, { runner, bwrap: runner.bwrap });
    return started;
  };
  const detach = probeTaskCallbacks(byToken);

  return {
    engine,
    client,
    bastionAddress: (await engine.bastionOf('bench')).address,
    bwrapPath,
    traces,
    runnerCpu,
    spawnerPid: () => engine.sandboxes.spawnerPid,
    setIsolation: (fn) => {
      choose = fn;
      spawned = 0;
    },
    setWarmRunners: (count) => {
      launcher.opts.warm = count ?? defaultWarm;
    },
    waitForEnd: async (id, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        // A loaded machine can time out one poll; the deadline still bounds the wait.
        const view = await client.get(id).catch((e: unknown) => {
          if (Date.now() > deadline) throw e;
          return undefined;
        });
        if (view && FINAL.has(view.status)) return view;
        if (Date.now() > deadline) throw new Error(`deployment ${id} still ${view?.status ?? 'unknown'} after ${timeoutMs / 1000} s`);
        // Once a second: the figures come from the deployment's own timestamps, and each GET reads every step
        // record from the engine being measured (at 4 a second that was load of the bench's own making).
        await sleep(1000);
      }
    },
    history: (id) => client.history(id),
    tail: (n = 30) => lines.slice(-n).join('\n'),
    stop: async () => {
      detach();
      await engine.stop();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/**
 * Records when a task token's first SendTaskHeartbeat and its SendTaskSuccess reach the local
 * Step Functions (the runner calls them over HTTP, so arrival is what the state machine sees).
 */
function probeTaskCallbacks(byToken: Map<string, TaskTrace>): () => void {
  const proto = LocalStepFunctions.prototype;
  const heartbeat = proto.sendTaskHeartbeat;
  const success = proto.sendTaskSuccess;
  proto.sendTaskHeartbeat = function (this: LocalStepFunctions, taskToken: string) {
    const trace = byToken.get(taskToken);
    if (trace && trace.firstHeartbeatAt === undefined) trace.firstHeartbeatAt = now();
    return heartbeat.call(this, taskToken);
  };
  proto.sendTaskSuccess = function (this: LocalStepFunctions, taskToken: string, output: string) {
    const trace = byToken.get(taskToken);
    if (trace) trace.successAt = now();
    return success.call(this, taskToken, output);
  };
  return () => {
    proto.sendTaskHeartbeat = heartbeat;
    proto.sendTaskSuccess = success;
  };
}

/** A loopback block of its own, so the bench can run beside test engines. */
export function runDeployment(name: string, steps: { id: string; command: string; dependsOn?: string[] }[]) {
  return {
    name,
    bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
    workflow: { steps: steps.map((s) => ({ action: 'run', ...s })) },
  };
}


export interface Summary {
  n: number;
  mean: number;
  median: number;
  p90: number;
  min: number;
  max: number;
}

/** Nearest-rank percentiles; values keep their unit. */
export function summarize(values: readonly number[]): Summary {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
  return {
    n: sorted.length,
    mean: sorted.reduce((s, v) => s + v, 0) / (sorted.length || 1),
    median: rank(50),
    p90: rank(90),
    min: sorted[0] ?? Number.NaN,
    max: sorted[sorted.length - 1] ?? Number.NaN,
  };
}

export const round = (value: number, digits = 3): number => Math.round(value * 10 ** digits) / 10 ** digits;

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
