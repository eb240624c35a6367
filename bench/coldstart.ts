import { planWorkflow } from '../core/dag.ts';
import type { DeploymentView, StepView } from '../core/api.ts';
import { loadAverage, round, runDeployment, startBenchEngine, type LoadStamp } from './harness.ts';
import { mulberry32, randomDag, type DagStepSpec } from './scheduling.ts';

/**
 * Cold starts (issue 12): local ECS draws each sandbox's start from a log-normal distribution
 * shaped like Fargate's (median 45 s, p90 60 s), time-scaled, and three workflows run with
 * pre-start off, then on (the default cap), then on under a tighter cap and with a cap of the workflow's size, in one run.
 * The physical limit is the critical path plus one start.
 */

export const COLDSTART_WORKFLOWS = ['chain10', 'dag60', 'independent200', 'slow3'] as const;

/**
 * off: each sandbox starts at its release; on: pre-started within `maxWaiting`; tight: within TIGHT_CAP, what a
 * cap the workflow outgrows costs (run only where it binds); uncapped: pre-started with
 * `maxWaiting` as large as the workflow (run only where the cap binds: more steps than `maxWaiting`);
 * rerun: on, with the lookahead by time, the workflow run twice on one engine (the second run knows the
 * first one's step durations). slow3, whose steps are longer than two starts, runs only in rerun.
 */
export const COLDSTART_MODES = ['off', 'on', 'tight', 'uncapped', 'rerun'] as const;

/** The tight mode's cap: the default until 2026-11-30 (adapters/aws/engineDeps.ts says why it changed). */
export const TIGHT_CAP = 20;
export type ColdstartMode = (typeof COLDSTART_MODES)[number];

export interface ColdstartCase {
  workflow: (typeof COLDSTART_WORKFLOWS)[number];
  steps: number;
  /** Σ of the longest chain of sleeps, seconds. */
  criticalPathS: number;
  /** Workflow makespan: bastion-open ended → last workflow step ended, seconds. */
  makespanS: number;
  ratio: number;
  /** makespan ÷ (critical path + one median start): 1 is the physical limit. */
  ratioToLimit: number;
  /** (makespan − critical path) in median starts: the issue's "n starts lost". */
  startsLost: number;
  /** Σ sandbox-seconds pre-started sandboxes waited for their release, on the engine's clock. */
  idleSandboxS: number;
  /** The same at Fargate's time (÷ time scale): what AWS would bill as idle. */
  idleSandboxFargateS: number;
  /** The most pre-started sandboxes waiting for their release at once (pre-start → release): the cap bounds it. */
  peakWaiting?: number;
  load: LoadStamp;
  /** rerun: the first run's figures (no earlier run to learn from); the case's own are the second run's. */
  firstRun?: { makespanS: number; idleSandboxS: number; idleSandboxFargateS: number };
  /** Set when the deployment did not succeed; the figures are then NaN. */
  error?: string;
}

export interface ColdstartResult {
  timeScale: number;
  /** Simulated start, seconds at Fargate's time, and on the engine's clock. */
  startMedianS: number;
  startP90S: number;
  scaledMedianS: number;
  seed: number;
  maxWaiting: number;
  off: ColdstartCase[];
  on: ColdstartCase[];
  /** Pre-start under TIGHT_CAP, where the workflow has more steps (absent in results from before this mode). */
  tight?: ColdstartCase[];
  /** Pre-start with the cap at the workflow's size (absent in results from before this mode). */
  uncapped?: ColdstartCase[];
  /** Pre-start on with the lookahead by time: a second run of each workflow (absent before this mode). */
  rerun?: ColdstartCase[];
  /** The issue's goals, checked on the "on" figures; `dagTight` and `dagUncapped` on the DAG's runs in those modes. */
  goals: { chain: Goal; dag: Goal; dagTight?: Goal; dagUncapped?: Goal };
}

export interface Goal {
  limitS: number;
  met: boolean;
}

const MEDIAN_S = 45;
const P90_S = 60;

interface Workflow {
  name: ColdstartCase['workflow'];
  steps: DagStepSpec[];
}

/** A chain of `n` steps, each sleeping 0.2–1.0 s from the same seeded PRNG as the DAG. */
function chain(seed: number, n: number): DagStepSpec[] {
  const random = mulberry32(seed + 1);
  return Array.from({ length: n }, (_, i) => ({
    id: `c${String(i + 1).padStart(2, '0')}`,
    sleepSeconds: round(0.2 + 0.8 * random(), 2),
    dependsOn: i === 0 ? [] : [`c${String(i).padStart(2, '0')}`],
  }));
}

/** Seconds each step of slow3 sleeps: longer than two simulated starts at the default time scale (2 × 12 s). */
export const SLOW_STEP_S = 30;

/** A chain of 3 steps longer than two starts: the third sandbox has nothing to hide until the second step runs. */
function slow(n: number): DagStepSpec[] {
  return Array.from({ length: n }, (_, i) => ({ id: `l${i + 1}`, sleepSeconds: SLOW_STEP_S, dependsOn: i === 0 ? [] : [`l${i}`] }));
}

function independent(n: number): DagStepSpec[] {
  return Array.from({ length: n }, (_, i) => ({ id: `i${String(i + 1).padStart(3, '0')}`, sleepSeconds: 0.5, dependsOn: [] }));
}

export async function runColdstart(opts: {
  seed: number;
  timeScale: number;
  maxWaiting: number;
  log: (line: string) => void;
  /** Only these workflows (default all): a quicker look at one case while working on it. */
  workflows?: readonly ColdstartCase['workflow'][];
  /** Only these modes (default all three, in COLDSTART_MODES order). */
  modes?: readonly ColdstartMode[];
  /** Called after each case with the figures so far. */
  progress?: (partial: ColdstartResult) => Promise<void>;
}): Promise<ColdstartResult> {
  const workflows: Workflow[] = [
    { name: 'chain10' as const, steps: chain(opts.seed, 10) },
    { name: 'dag60' as const, steps: randomDag(opts.seed, 60) },
    { name: 'independent200' as const, steps: independent(200) },
    { name: 'slow3' as const, steps: slow(3) },
  ].filter((w) => opts.workflows === undefined || opts.workflows.includes(w.name));
  const result: ColdstartResult = {
    timeScale: opts.timeScale,
    startMedianS: MEDIAN_S,
    startP90S: P90_S,
    scaledMedianS: round(MEDIAN_S * opts.timeScale, 3),
    seed: opts.seed,
    maxWaiting: opts.maxWaiting,
    off: [],
    on: [],
    tight: [],
    uncapped: [],
    rerun: [],
    goals: { chain: { limitS: 0, met: false }, dag: { limitS: 0, met: false } },
  };
  // One engine at a time (the local engine points this process's SDK environment at its own services);
  // each workflow in every mode, and `progress` after each, so a late failure keeps what came before.
  const modes = opts.modes ?? COLDSTART_MODES;
  for (const w of workflows) {
    for (const mode of modes) {
      // Where the workflow fits under the cap, uncapped is the same run as on.
      if (mode === 'uncapped' && w.steps.length <= opts.maxWaiting) continue;
      // A tight cap that does not bind, or is no tighter than the default, would repeat a run.
      if (mode === 'tight' && (w.steps.length <= TIGHT_CAP || TIGHT_CAP >= opts.maxWaiting)) continue;
      // slow3 is there to show the lookahead only; 200 roots have nothing to look ahead of.
      if (w.name === 'slow3' ? mode !== 'rerun' : mode === 'rerun' && w.name === 'independent200') continue;
      // Same seeded draws in every mode, and for each run of a rerun: the comparison is the scheduling, not the dice.
      let draws = mulberry32(opts.seed + 7);
      const bench = await startBenchEngine({
        timeScale: opts.timeScale,
        sandboxStartLatency: { median: MEDIAN_S, p90: P90_S, random: () => draws() },
        prestart: prestartOf(mode, opts.maxWaiting, w.steps.length, opts.timeScale),
      });
      try {
        const c = await (mode === 'rerun' ? runTwice(bench, w, result.scaledMedianS, opts.timeScale, () => (draws = mulberry32(opts.seed + 7))) : runCase(bench, w, result.scaledMedianS, opts.timeScale)).catch(
          (e: unknown) => failedCase(w, e),
        );
        const first = c.firstRun ? ` (first run: makespan ${c.firstRun.makespanS} s, idle ${c.firstRun.idleSandboxS} s)` : '';
        opts.log(`coldstart ${mode} ${w.name}: ${c.error ?? `makespan ${c.makespanS} s, critical path ${c.criticalPathS} s, ratio ${c.ratio}, starts lost ${c.startsLost}, idle ${c.idleSandboxS} s, peak waiting ${c.peakWaiting}${first}`}`);
        (result[mode] ??= []).push(c);
      } finally {
        await bench.stop();
      }
      result.goals = goals(result);
      await opts.progress?.(result);
    }
  }
  return result;
}

/** Each mode's pre-start: its cap (the default, TIGHT_CAP, or the workflow's size), and the lookahead's start for a rerun. */
function prestartOf(mode: ColdstartMode, maxWaiting: number, steps: number, timeScale: number): false | { maxWaiting: number; startSeconds?: number } {
  if (mode === 'off') return false;
  if (mode === 'rerun') return { maxWaiting, startSeconds: P90_S * timeScale };
  return { maxWaiting: { on: maxWaiting, tight: TIGHT_CAP, uncapped: steps }[mode] };
}

function goals(result: ColdstartResult): ColdstartResult['goals'] {
  const find = (cases: ColdstartCase[] | undefined, name: ColdstartCase['workflow']) => cases?.find((c) => c.workflow === name && !c.error);
  const goal = (c: ColdstartCase | undefined, limitS: number): Goal => ({ limitS: round(limitS, 2), met: c !== undefined && c.makespanS <= limitS });
  const chain = find(result.on, 'chain10');
  const dagLimit = (c: ColdstartCase | undefined) => 1.3 * ((c?.criticalPathS ?? 0) + result.scaledMedianS);
  const dag = find(result.on, 'dag60');
  const dagTight = find(result.tight, 'dag60');
  const dagUncapped = find(result.uncapped, 'dag60');
  return {
    chain: goal(chain, (chain?.criticalPathS ?? 0) + 1.3 * result.scaledMedianS),
    dag: goal(dag, dagLimit(dag)),
    ...(dagTight ? { dagTight: goal(dagTight, dagLimit(dagTight)) } : {}),
    ...(dagUncapped ? { dagUncapped: goal(dagUncapped, dagLimit(dagUncapped)) } : {}),
  };
}

/** A deployment that did not succeed (on an overloaded machine: Lambda timeouts) is reported, not hidden. */
function failedCase(w: Workflow, e: unknown): ColdstartCase {
  const message = (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 300);
  return {
    workflow: w.name,
    steps: w.steps.length,
    criticalPathS: Number.NaN,
    makespanS: Number.NaN,
    ratio: Number.NaN,
    ratioToLimit: Number.NaN,
    startsLost: Number.NaN,
    idleSandboxS: Number.NaN,
    idleSandboxFargateS: Number.NaN,
    load: { start: loadAverage(), end: loadAverage() },
    error: message,
  };
}

/** The same deployment twice on one engine: the second run's figures, with the first's beside them. */
async function runTwice(
  bench: Awaited<ReturnType<typeof startBenchEngine>>,
  w: Workflow,
  startS: number,
  timeScale: number,
  redraw: () => void,
): Promise<ColdstartCase> {
  const first = await runCase(bench, w, startS, timeScale);
  redraw();
  const second = await runCase(bench, w, startS, timeScale);
  return { ...second, firstRun: { makespanS: first.makespanS, idleSandboxS: first.idleSandboxS, idleSandboxFargateS: first.idleSandboxFargateS } };
}

async function runCase(bench: Awaited<ReturnType<typeof startBenchEngine>>, w: Workflow, startS: number, timeScale: number): Promise<ColdstartCase> {
  const sleepOf = new Map(w.steps.map((s) => [s.id, s.sleepSeconds]));
  const plan = planWorkflow(w.steps, (id) => sleepOf.get(id) ?? 0);
  const start = loadAverage();
  const { deploymentId } = await bench.client.submit(
    runDeployment(`bench-coldstart-${w.name}`, w.steps.map((s) => ({ id: s.id, command: `sleep ${s.sleepSeconds}`, dependsOn: s.dependsOn }))),
  );
  const view: DeploymentView = await bench.waitForEnd(deploymentId, 900_000);
  if (view.status !== 'SUCCEEDED') throw new Error(`coldstart ${w.name} ${view.status}: ${view.error ?? ''} ${view.cause ?? ''}\n${bench.tail()}`);
  const ended = (s: StepView | undefined) => Date.parse(s?.endedAt ?? '');
  const opened = ended(view.steps.find((s) => s.stepId === 'bastion-open'));
  const last = Math.max(...view.steps.filter((s) => !s.system).map(ended));
  const makespanS = (last - opened) / 1000;
  const cp = plan.criticalPath.weight;
  const idle = view.idleSandboxSeconds ?? 0;
  return {
    workflow: w.name,
    steps: w.steps.length,
    criticalPathS: round(cp, 2),
    makespanS: round(makespanS, 2),
    ratio: round(makespanS / cp, 2),
    ratioToLimit: round(makespanS / (cp + startS), 2),
    startsLost: round((makespanS - cp) / startS, 1),
    idleSandboxS: round(idle, 1),
    idleSandboxFargateS: round(idle / timeScale, 0),
    peakWaiting: peakWaiting(view.steps),
    load: { start, end: loadAverage() },
  };
}

/** The most steps at once between their pre-start and their release (or end, when never released). */
export function peakWaiting(steps: readonly StepView[]): number {
  const edges = steps.flatMap((s) => {
    const from = Date.parse(s.prestartedAt ?? '');
    const to = Date.parse(s.startedAt ?? s.endedAt ?? '');
    return Number.isNaN(from) || Number.isNaN(to) ? [] : [{ at: from, delta: 1 }, { at: to, delta: -1 }];
  });
  // Ends before starts at the same instant: a release and a pre-start in one millisecond do not overlap.
  edges.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let now = 0;
  let peak = 0;
  for (const e of edges) peak = Math.max(peak, (now += e.delta));
  return peak;
}
