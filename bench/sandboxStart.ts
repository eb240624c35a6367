import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { bundleRunner } from '../local/sandbox/runnerBundle.ts';
import { BWRAP_BASE_ARGS } from '../local/sandbox/launcher.ts';
import { loadAverage, now, runDeployment, summarize, type BenchEngine, type LoadStamp, type Summary, type TaskTrace } from './harness.ts';
import { roundSummary } from './scheduling.ts';

/**
 * Sandbox start: RunTask (the launcher's `runTask` call) → the runner's first SendTaskHeartbeat,
 * one sandbox at a time, on an engine of its own with pre-start off. With pre-start on (the default)
 * a chain's steps are all started ahead, up to 20 at once on this machine's 2 cores, and their boots
 * queue for the launcher's boot slots: the figure was their contention, not one start (a 16-step
 * chain at load 8: median 4.7 s with pre-start, 1.4 s without, runners then all ready in time). Two chains of `true` steps: first as the engine runs (runners started ahead of need,
 * so RunTask finds one waiting), then with no runner kept warm, so each RunTask spawns its own (the
 * whole start: spawn, bwrap, module load, task, first heartbeat). Runners alternate bwrap on/off, so
 * both modes see the same machine load. Bare process starts, timed the same way in a loop, say how
 * much of it is Node itself and how much the runner's own start.
 */

export interface SandboxStartResult {
  load: LoadStamp;
  runs: number;
  /** milliseconds; undefined when bwrap is not usable on this machine. RunTask finds a runner started ahead (the engine's default). */
  engineBwrap?: Summary;
  engineNoBwrap: Summary;
  /** RunTask → first heartbeat when RunTask spawns the runner itself (no runner kept warm). */
  coldBwrap?: Summary;
  coldNoBwrap?: Summary;
  /** A runner's boot inside the engine: spawned → ready for its task (modules loaded, clients built), bwrap when usable. */
  runnerBoot?: Summary;
  /** `node -e 0` with an empty environment (as `env -i`), spawn → exit. */
  nodeBare: Summary;
  /** The same inside bwrap with the launcher's namespaces. */
  nodeBwrap?: Summary;
  /** The bundled runner with an empty environment: loads its modules, finds no task, exits (via `sh -c`). */
  runnerLoad: Summary;
  /** CPU (user + sys) of those runner loads: what each sandbox costs the machine before its step starts. */
  runnerLoadCpu: Summary;
  /** The same runner without its V8 code cache (sandbox/codeCache.ts): what the cache saves. */
  runnerLoadNoCache?: Summary;
  runnerLoadNoCacheCpu?: Summary;
}

export async function runSandboxStart(bench: BenchEngine, opts: { runs: number; log: (line: string) => void }): Promise<SandboxStartResult> {
  const start = loadAverage();
  const withBwrap = bench.bwrapPath !== undefined;
  const count = withBwrap ? 2 * opts.runs : opts.runs;
  bench.setIsolation((runnerNo) => withBwrap && runnerNo % 2 === 1);
  let warm: TaskTrace[];
  let cold: TaskTrace[];
  try {
    warm = await chain(bench, 'w', count);
    bench.setWarmRunners(0);
    // The two runners still warm go to the first two tasks; every later RunTask spawns its own.
    cold = (await chain(bench, 'k', count + 2)).filter((t) => t.runner !== undefined && t.runner.askedAt >= t.runTaskAt);
  } finally {
    bench.setIsolation(undefined);
    bench.setWarmRunners(undefined);
  }
  // A task whose runner was not ready yet at its RunTask waited for a boot: not the warm path.
  warm = warm.filter((t) => t.runner?.readyAt === undefined || t.runner.readyAt <= t.runTaskAt);
  const latency = (traces: TaskTrace[], bwrap: boolean) => traces.filter((t) => t.bwrap === bwrap).map((t) => (t.firstHeartbeatAt ?? 0) - t.runTaskAt);
  const boots = warm.flatMap((t) => (t.runner?.readyAt !== undefined && t.bwrap === withBwrap ? [t.runner.readyAt - t.runner.spawnedAt] : []));

  const runner = await bundleRunner();
  // The same bundle without its code cache, beside it in a scratch directory.
  const uncached = await mkdtemp(join(tmpdir(), 'ctd-bench-runner-'));
  for (const f of (await readdir(dirname(runner))).filter((n) => n.endsWith('.cjs'))) await copyFile(join(dirname(runner), f), join(uncached, f));
  const bare: number[] = [];
  const boxed: number[] = [];
  const loads: number[] = [];
  const loadsCpu: number[] = [];
  const coldLoads: number[] = [];
  const coldLoadsCpu: number[] = [];
  for (let i = 0; i < opts.runs; i++) {
    bare.push((await timeSpawn([process.execPath, '-e', '0'])).wallMs);
    if (bench.bwrapPath) boxed.push((await timeSpawn([bench.bwrapPath, ...BWRAP_ARGS, process.execPath, '-e', '0'])).wallMs);
    // `times` prints the children's user and system CPU: the runner's cost whatever the load.
    const load = await timeSpawn(['/bin/sh', '-c', '"$0" "$1" 2>/dev/null; times', process.execPath, runner]);
    loads.push(load.wallMs);
    loadsCpu.push(childCpuMs(load.stdout));
    const cold = await timeSpawn(['/bin/sh', '-c', '"$0" "$1" 2>/dev/null; times', process.execPath, join(uncached, 'runner.cjs')]);
    coldLoads.push(cold.wallMs);
    coldLoadsCpu.push(childCpuMs(cold.stdout));
  }
  await rm(uncached, { recursive: true, force: true });
  opts.log(`sandbox start: ${warm.length} starts with a warm runner, ${cold.length} without, ${opts.runs}× each bare spawn`);
  const summary = (values: number[]) => roundSummary(summarize(values), 1);
  return {
    load: { start, end: loadAverage() },
    runs: opts.runs,
    ...(withBwrap ? { engineBwrap: summary(latency(warm, true)), coldBwrap: summary(latency(cold, true)) } : {}),
    engineNoBwrap: summary(latency(warm, false)),
    coldNoBwrap: summary(latency(cold, false)),
    ...(boots.length ? { runnerBoot: summary(boots) } : {}),
    nodeBare: roundSummary(summarize(bare), 1),
    ...(boxed.length ? { nodeBwrap: roundSummary(summarize(boxed), 1) } : {}),
    runnerLoad: roundSummary(summarize(loads), 1),
    runnerLoadCpu: roundSummary(summarize(loadsCpu), 1),
    runnerLoadNoCache: roundSummary(summarize(coldLoads), 1),
    runnerLoadNoCacheCpu: roundSummary(summarize(coldLoadsCpu), 1),
  };
}

/** A chain of `count` `true` steps (`<prefix>01` …), run to its end; its tasks' traces. */
async function chain(bench: BenchEngine, prefix: string, count: number): Promise<TaskTrace[]> {
  const id = (i: number) => `${prefix}${String(i).padStart(2, '0')}`;
  const steps = Array.from({ length: count }, (_, i) => ({ id: id(i + 1), command: 'true', ...(i > 0 ? { dependsOn: [id(i)] } : {}) }));
  const { deploymentId } = await bench.client.submit(runDeployment(`bench-sandbox-start-${prefix}`, steps));
  const view = await bench.waitForEnd(deploymentId, 240_000);
  if (view.status !== 'SUCCEEDED') throw new Error(`sandbox-start deployment ${view.status}: ${view.error ?? ''} ${view.cause ?? ''}\n${bench.tail()}`);
  return bench.traces.filter((t) => t.deploymentId === deploymentId && t.stepId.startsWith(prefix) && t.firstHeartbeatAt !== undefined);
}

/** The launcher's namespaces, minus its per-task binds. */
const BWRAP_ARGS = [...BWRAP_BASE_ARGS, '--clearenv', '--'];

/** Milliseconds from spawn to exit, with an empty environment (what `env -i` gives). */
function timeSpawn([command, ...args]: string[]): Promise<{ wallMs: number; stdout: string }> {
  return new Promise((resolve, reject) => {
    const t0 = now();
    const child = spawn(command!, args, { env: {}, stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.once('error', reject);
    child.once('close', () => resolve({ wallMs: now() - t0, stdout }));
  });
}

/** The second line of sh's `times`: children's user and system time, e.g. `0m0.570000s 0m0.080000s`. */
function childCpuMs(times: string): number {
  const line = times.trim().split('\n')[1] ?? '';
  return [...line.matchAll(/(\d+)m([\d.]+)s/g)].reduce((sum, m) => sum + (Number(m[1]) * 60 + Number(m[2])) * 1000, 0);
}
