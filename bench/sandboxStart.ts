import { spawn } from 'node:child_process';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { bundleRunner } from '../local/sandbox/runnerBundle.ts';
import { BWRAP_BASE_ARGS } from '../local/sandbox/launcher.ts';
import { loadAverage, now, runDeployment, summarize, type BenchEngine, type LoadStamp, type Summary } from './harness.ts';
import { roundSummary } from './scheduling.ts';

/**
 * Sandbox start: RunTask (the launcher's `runTask` call) → the runner's first SendTaskHeartbeat,
 * measured on a chain of `true` steps so only one sandbox starts at a time. Chain steps alternate
 * bwrap on/off, so both modes see the same machine load. Bare process starts, timed the same way
 * in a loop, say how much of it is Node itself and how much the runner's own start.
 */

export interface SandboxStartResult {
  load: LoadStamp;
  runs: number;
  /** milliseconds; undefined when bwrap is not usable on this machine. */
  engineBwrap?: Summary;
  engineNoBwrap: Summary;
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
  const chain = Array.from({ length: count }, (_, i) => ({ id: `c${String(i + 1).padStart(2, '0')}`, command: 'true', ...(i > 0 ? { dependsOn: [`c${String(i).padStart(2, '0')}`] } : {}) }));
  const bwrapFor = (stepId: string) => withBwrap && Number(stepId.slice(1)) % 2 === 1;
  bench.setIsolation(bwrapFor);
  let deploymentId: string;
  try {
    deploymentId = (await bench.client.submit(runDeployment('bench-sandbox-start', chain))).deploymentId;
    const view = await bench.waitForEnd(deploymentId, 240_000);
    if (view.status !== 'SUCCEEDED') throw new Error(`sandbox-start deployment ${view.status}: ${view.error ?? ''} ${view.cause ?? ''}\n${bench.tail()}`);
  } finally {
    bench.setIsolation(undefined);
  }
  const traces = bench.traces.filter((t) => t.deploymentId === deploymentId && t.stepId.startsWith('c') && t.firstHeartbeatAt !== undefined);
  const latency = (bwrap: boolean) => traces.filter((t) => t.bwrap === bwrap).map((t) => (t.firstHeartbeatAt ?? 0) - t.runTaskAt);

  const runner = await bundleRunner();
  // The same bundle without its code cache, beside it in a scratch directory.
  const uncached = await mkdtemp(join(tmpdir(), 'ctd-bench-runner-'));
  for (const f of ['runner.cjs', 'runner-bundle.cjs']) await copyFile(join(dirname(runner), f), join(uncached, f));
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
  opts.log(`sandbox start: ${traces.length} engine starts, ${opts.runs}× each bare spawn`);
  return {
    load: { start, end: loadAverage() },
    runs: opts.runs,
    ...(withBwrap ? { engineBwrap: roundSummary(summarize(latency(true)), 1) } : {}),
    engineNoBwrap: roundSummary(summarize(latency(false)), 1),
    nodeBare: roundSummary(summarize(bare), 1),
    ...(boxed.length ? { nodeBwrap: roundSummary(summarize(boxed), 1) } : {}),
    runnerLoad: roundSummary(summarize(loads), 1),
    runnerLoadCpu: roundSummary(summarize(loadsCpu), 1),
    runnerLoadNoCache: roundSummary(summarize(coldLoads), 1),
    runnerLoadNoCacheCpu: roundSummary(summarize(coldLoadsCpu), 1),
  };
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
