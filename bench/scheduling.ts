import { availableParallelism } from 'node:os';
import { mulberry32 } from './random.ts';
import { planWorkflow } from '../core/dag.ts';
import type { StepView } from '../core/api.ts';
import { cpuSeconds, loadAverage, machineCpuSeconds, processCpuSeconds, type RunnerCpuReport, round, runDeployment, summarize, type BenchEngine, type LoadStamp, type Summary } from './harness.ts';
import { countTransitions } from './transitions.ts';

/**
 * Scheduling overhead: a seeded random DAG of `run` steps that only sleep, through the whole
 * engine. The makespan is compared with the DAG's critical path (the best any scheduler can do)
 * and with what a wave-by-wave scheduler would take on the same DAG.
 */

export interface DagStepSpec {
  id: string;
  sleepSeconds: number;
  dependsOn: string[];
}

export interface SchedulingResult {
  seed: number;
  steps: number;
  edges: number;
  levels: number;
  load: LoadStamp;
  /** Longest chain of sleeps, in seconds: the ideal makespan. */
  criticalPathS: number;
  criticalPathSteps: number;
  /** Σ over levels of the longest sleep in the level. */
  waveS: number;
  makespanS: number;
  ratio: number;
  waveRatio: number;
  /** Step duration (startedAt → endedAt) minus its sleep, in seconds. */
  overheadS: Summary;
  meanSleepS: number;
  /**
   * Mean seconds per phase of a step, around its release (sandboxes are pre-started, so most of
   * their start comes before it): how far ahead of the release its RunTask came, RunTask → its
   * runner ready (the boot queue and the boot), how far ahead of the release the sandbox was up
   * (first heartbeat), release → the runner starts the action (the wake or poll that shows it the release,
   * the secrets, the decrypt), the action minus the sleep, and SendTaskSuccess → recorded.
   */
  phasesS: { lead: number; boot: number; upAhead: number; seen: number; seenWhenUp: number; action: number; record: number };
  /** Steps whose sandbox was up (first heartbeat) only after their release: their start was not hidden. */
  upAfterRelease: number;
  /** Longest chain of the measured step durations: the makespan of a perfect scheduler given these sandboxes. */
  criticalPathMeasuredS: number;
  /** Σ over levels of the longest measured duration: a wave scheduler given these sandboxes. */
  waveMeasuredS: number;
  /** Seconds from "all dependencies ended" (roots: bastion opened) to the step's release. */
  releaseDelayS: Summary;
  /** Mean release delay of the steps the Map reaches within its first 40 iterations, and of the rest. */
  releaseDelayByIterationS: { first40: number; rest: number };
  /** The three longest release delays, with the step's Map iteration (its place in topological order). */
  worstReleases: { stepId: string; iteration: number; delayS: number }[];
  maxRunning: number;
  /**
   * CPU seconds the engine process (local services, Lambda handlers, state machine, API) spent during
   * the run. The sandboxes' CPU cannot be read the same way: bwrap's pid-namespace init is never
   * reaped by the engine, so its CPU never reaches the engine's child times; each runner reports its own (`cpu`).
   */
  engineCpuS: number;
  /** Where the run's CPU went (absent in results written before it was measured). */
  cpu?: RunCpu;
  transitions: number;
  /** Every run of a repeated measurement, in the order run; this result is their median run (absent: measured once). */
  runs?: SchedulingRun[];
}

/** One run's headline figures, kept beside the median run's full account. */
export interface SchedulingRun {
  ratio: number;
  lowerBoundRatio?: number;
  loadStart: LoadStamp['start'];
}

/**
 * The run whose makespan ÷ critical path is the median (the lower of the middle two for an even count), with every
 * run's headline figures: one run of the same DAG on the same machine varies by a tenth or more of the critical path.
 */
export function medianRun(results: readonly SchedulingResult[]): SchedulingResult {
  if (results.length === 0) throw new Error('no scheduling run to take the median of');
  const median = [...results].sort((a, b) => a.ratio - b.ratio)[Math.floor((results.length - 1) / 2)]!;
  if (results.length === 1) return median;
  const runs = results.map((r) => ({ ratio: r.ratio, ...(r.cpu ? { lowerBoundRatio: r.cpu.lowerBoundRatio } : {}), loadStart: r.load.start }));
  return { ...median, runs };
}

/**
 * CPU seconds (user + system) over the run: from the submit to the deployment's end, seen by the bench.
 * The runners' figures are what each of this deployment's runners reported in its last log line
 * (sandbox/cpuUsage.ts), their whole life, the boot of a runner started warm before the submit included;
 * bwrap's own processes are not in them (their times never reach a parent that waits: see engineCpuS).
 */
export interface RunCpu {
  /** Wall seconds the machine's figures cover. */
  windowS: number;
  cores: number;
  engineS: number;
  /** The process that forks the runners (its own CPU, not its children's). */
  spawnerS?: number;
  /** Runners that reported, and their sum: boot, own CPU after ready, the action's processes. */
  runners: number;
  runnersS: number;
  /** Mean per runner. */
  perRunnerS: { boot: number; afterReady: number; children: number; total: number };
  /** engine + spawner + runners: the CPU this run needs. */
  ownS: number;
  /** Everything the machine's cores did in the window (/proc/stat), and that minus this run's own: other load, bwrap, the kernel's work for nobody in particular. */
  machineBusyS?: number;
  otherS?: number;
  /** ownS ÷ cores: no schedule on this machine finishes the run faster, and that ÷ the critical path. */
  lowerBoundS: number;
  lowerBoundRatio: number;
}

export { mulberry32 };

/** Each step sleeps 0.2–1.0 s and depends on 0–3 distinct earlier steps. */
export function randomDag(seed: number, count: number): DagStepSpec[] {
  const random = mulberry32(seed);
  const steps: DagStepSpec[] = [];
  for (let i = 0; i < count; i++) {
    const sleepSeconds = round(0.2 + 0.8 * random(), 2);
    const wanted = Math.min(i, Math.floor(random() * 4));
    const deps = new Set<number>();
    while (deps.size < wanted) deps.add(Math.floor(random() * i));
    steps.push({ id: stepId(i), sleepSeconds, dependsOn: [...deps].sort((a, b) => a - b).map(stepId) });
  }
  return steps;
}

const stepId = (i: number): string => `s${String(i + 1).padStart(2, '0')}`;

export async function runScheduling(bench: BenchEngine, opts: { seed: number; steps: number; log: (line: string) => void }): Promise<SchedulingResult> {
  const dag = randomDag(opts.seed, opts.steps);
  const sleepOf = new Map(dag.map((s) => [s.id, s.sleepSeconds]));
  const plan = planWorkflow(dag, (id) => sleepOf.get(id) ?? 0);
  const waveS = plan.levels.reduce((sum, level) => sum + Math.max(...level.map((id) => sleepOf.get(id) ?? 0)), 0);
  opts.log(
    `scheduling: seed ${opts.seed}, ${dag.length} steps, ${plan.levels.length} levels, critical path ${round(plan.criticalPath.weight, 2)} s over ${plan.criticalPath.steps.length} steps`,
  );

  const start = loadAverage();
  const cpuBefore = cpuSeconds();
  const machineBefore = machineCpuSeconds();
  const spawnerPid = bench.spawnerPid();
  const spawnerBefore = processCpuSeconds(spawnerPid);
  const windowFrom = performance.now();
  const body = runDeployment(
    'bench-scheduling',
    dag.map((s) => ({ id: s.id, command: `sleep ${s.sleepSeconds}`, dependsOn: s.dependsOn })),
  );
  const { deploymentId } = await bench.client.submit(body);
  const view = await bench.waitForEnd(deploymentId, 300_000);
  const load = { start, end: loadAverage() };
  const cpuAfter = cpuSeconds();
  const machineAfter = machineCpuSeconds();
  // The same spawner throughout, or its figure is unknown (a new one would start from 0).
  const spawnerAfter = bench.spawnerPid() === spawnerPid ? processCpuSeconds(spawnerPid) : undefined;
  const windowS = (performance.now() - windowFrom) / 1000;
  if (view.status !== 'SUCCEEDED') throw new Error(`scheduling deployment ${view.status}: ${view.error ?? ''} ${view.cause ?? ''}\n${bench.tail()}`);

  const byId = new Map(view.steps.map((s) => [s.stepId, s]));
  const workflow = view.steps.filter((s) => !s.system);
  const started = (s: StepView | undefined) => Date.parse(s?.startedAt ?? '');
  const ended = (s: StepView | undefined) => Date.parse(s?.endedAt ?? '');
  const first = Math.min(...workflow.map(started));
  const last = Math.max(...workflow.map(ended));
  const makespanS = (last - first) / 1000;
  const durationS = new Map(workflow.map((s) => [s.stepId, (ended(s) - started(s)) / 1000]));

  const traces = new Map(bench.traces.filter((t) => t.deploymentId === deploymentId).map((t) => [t.stepId, t]));
  // The runner's own line once it has its secrets and starts the action: when it saw its release, plus two reads and a decrypt.
  const began = new Map<string, number>();
  for (const line of (await bench.client.logs(deploymentId)).lines) {
    if (line.stream === 'engine' && / attempt 1 started$/.test(line.text) && !began.has(line.stepId)) began.set(line.stepId, Date.parse(line.at));
  }
  const phases = { lead: [] as number[], boot: [] as number[], upAhead: [] as number[], seen: [] as number[], seenWhenUp: [] as number[], action: [] as number[], record: [] as number[] };
  let upAfterRelease = 0;
  for (const s of workflow) {
    const t = traces.get(s.stepId);
    const action = began.get(s.stepId);
    if (!t?.firstHeartbeatAt || !t.successAt || action === undefined) continue;
    const release = started(s);
    phases.lead.push(release - t.runTaskAt);
    if (t.runner?.readyAt !== undefined) phases.boot.push(Math.max(0, t.runner.readyAt - t.runTaskAt));
    phases.upAhead.push(release - t.firstHeartbeatAt);
    phases.seen.push(action - release);
    if (t.firstHeartbeatAt <= release) phases.seenWhenUp.push(action - release);
    else upAfterRelease++;
    phases.action.push(t.successAt - action - (sleepOf.get(s.stepId) ?? 0) * 1000);
    phases.record.push(ended(s) - t.successAt);
  }
  const meanS = (values: number[]) => round(summarize(values).mean / 1000);

  const bastionOpened = ended(byId.get('bastion-open'));
  const iteration = new Map(plan.order.map((id, i) => [id, i]));
  const releases = dag.map((s) => {
    const ready = s.dependsOn.length ? Math.max(...s.dependsOn.map((d) => ended(byId.get(d)))) : bastionOpened;
    return { stepId: s.id, iteration: iteration.get(s.id) ?? -1, delayS: round((started(byId.get(s.id)) - ready) / 1000) };
  });
  const releaseDelays = releases.map((r) => r.delayS);
  const meanDelay = (keep: (i: number) => boolean) => round(summarize(releases.filter((r) => keep(r.iteration)).map((r) => r.delayS)).mean);

  const measured = planWorkflow(dag, (id) => durationS.get(id) ?? 0);
  const waveMeasuredS = plan.levels.reduce((sum, level) => sum + Math.max(...level.map((id) => durationS.get(id) ?? 0)), 0);
  const transitions = countTransitions((await bench.history(deploymentId)).events).total;

  return {
    seed: opts.seed,
    steps: dag.length,
    edges: dag.reduce((n, s) => n + s.dependsOn.length, 0),
    levels: plan.levels.length,
    load,
    criticalPathS: round(plan.criticalPath.weight, 2),
    criticalPathSteps: plan.criticalPath.steps.length,
    waveS: round(waveS, 2),
    makespanS: round(makespanS, 2),
    ratio: round(makespanS / plan.criticalPath.weight, 2),
    waveRatio: round(waveS / plan.criticalPath.weight, 2),
    meanSleepS: round(summarize(dag.map((s) => s.sleepSeconds)).mean),
    overheadS: roundSummary(summarize(workflow.map((s) => (durationS.get(s.stepId) ?? 0) - (sleepOf.get(s.stepId) ?? 0)))),
    phasesS: {
      lead: meanS(phases.lead),
      boot: meanS(phases.boot),
      upAhead: meanS(phases.upAhead),
      seen: meanS(phases.seen),
      seenWhenUp: meanS(phases.seenWhenUp),
      action: meanS(phases.action),
      record: meanS(phases.record),
    },
    upAfterRelease,
    criticalPathMeasuredS: round(measured.criticalPath.weight, 2),
    waveMeasuredS: round(waveMeasuredS, 2),
    releaseDelayS: roundSummary(summarize(releaseDelays)),
    releaseDelayByIterationS: { first40: meanDelay((i) => i < 40), rest: meanDelay((i) => i >= 40) },
    worstReleases: [...releases].sort((a, b) => b.delayS - a.delayS).slice(0, 3),
    engineCpuS: round(cpuAfter - cpuBefore, 1),
    cpu: runCpu({
      windowS,
      cores: availableParallelism(),
      engineS: cpuAfter - cpuBefore,
      ...(spawnerBefore !== undefined && spawnerAfter !== undefined ? { spawnerS: spawnerAfter - spawnerBefore } : {}),
      runners: bench.runnerCpu.filter((r) => r.deploymentId === deploymentId),
      ...(machineBefore && machineAfter ? { machineBusyS: machineAfter.busy - machineBefore.busy } : {}),
      criticalPathS: plan.criticalPath.weight,
    }),
    maxRunning: maxOverlap(workflow.map((s) => [started(s), ended(s)])),
    transitions,
  };
}

/** The run's CPU by consumer, and the lower bound it sets on the makespan. */
export function runCpu(m: {
  windowS: number;
  cores: number;
  engineS: number;
  spawnerS?: number;
  runners: RunnerCpuReport[];
  machineBusyS?: number;
  criticalPathS: number;
}): RunCpu {
  const sumS = (pick: (r: RunnerCpuReport) => number) => m.runners.reduce((sum, r) => sum + pick(r), 0) / 1000;
  const boot = sumS((r) => r.bootMs);
  const afterReady = sumS((r) => r.afterReadyMs);
  const children = sumS((r) => r.childrenMs ?? 0);
  const runnersS = boot + afterReady + children;
  const ownS = m.engineS + (m.spawnerS ?? 0) + runnersS;
  const per = (v: number) => round(v / (m.runners.length || 1));
  const lowerBoundS = ownS / m.cores;
  return {
    windowS: round(m.windowS, 2),
    cores: m.cores,
    engineS: round(m.engineS, 2),
    ...(m.spawnerS !== undefined ? { spawnerS: round(m.spawnerS, 2) } : {}),
    runners: m.runners.length,
    runnersS: round(runnersS, 2),
    perRunnerS: { boot: per(boot), afterReady: per(afterReady), children: per(children), total: per(runnersS) },
    ownS: round(ownS, 2),
    ...(m.machineBusyS !== undefined ? { machineBusyS: round(m.machineBusyS, 2), otherS: round(m.machineBusyS - ownS, 2) } : {}),
    lowerBoundS: round(lowerBoundS, 2),
    lowerBoundRatio: round(lowerBoundS / m.criticalPathS, 2),
  };
}

/** The largest number of steps running at one instant. */
function maxOverlap(intervals: [number, number][]): number {
  const edges = intervals.flatMap(([a, b]) => [[a, 1] as const, [b, -1] as const]).sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let running = 0;
  let max = 0;
  for (const [, delta] of edges) {
    running += delta;
    max = Math.max(max, running);
  }
  return max;
}

export function roundSummary(s: Summary, digits = 3): Summary {
  return { n: s.n, mean: round(s.mean, digits), median: round(s.median, digits), p90: round(s.p90, digits), min: round(s.min, digits), max: round(s.max, digits) };
}
