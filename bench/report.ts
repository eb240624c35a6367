import { existsSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { DEFAULT_PRESTART_MAX_IDLE_SECONDS } from '../core/usecases/deps.ts';
import type { LoadAverage, LoadStamp, Machine, Summary } from './harness.ts';
import { SLOW_STEP_S, TIGHT_CAP, type ColdstartCase, type ColdstartResult } from './coldstart.ts';
import type { SandboxStartResult } from './sandboxStart.ts';
import type { RunCpu, SchedulingResult } from './scheduling.ts';
import type { TransitionsResult } from './transitions.ts';

/**
 * Results of the three benchmarks, kept in bench/results.json so that `--only X` refreshes one
 * section and docs/BENCHMARKS.md is still rewritten whole from the latest figures of each.
 */

interface Measured<T> {
  date: string;
  machine: Machine;
  result: T;
}

export interface BenchResults {
  scheduling?: Measured<SchedulingResult>;
  sandbox?: Measured<SandboxStartResult>;
  transitions?: Measured<TransitionsResult>;
  coldstart?: Measured<ColdstartResult>;
}

const RESULTS = fileURLToPath(new URL('./results.json', import.meta.url));
const DOC = fileURLToPath(new URL('../docs/BENCHMARKS.md', import.meta.url));

export function loadResults(): BenchResults {
  if (!existsSync(RESULTS)) return {};
  try {
    return JSON.parse(readFileSync(RESULTS, 'utf8')) as BenchResults;
  } catch {
    return {};
  }
}

export async function saveResults(results: BenchResults): Promise<string[]> {
  await writeFile(RESULTS, `${JSON.stringify(results, null, 2)}\n`);
  await writeFile(DOC, renderMarkdown(results));
  return [RESULTS, DOC];
}

const s = (x: number, digits = 2) => x.toFixed(digits);
const ms = (x: number) => `${Math.round(x)} ms`;
const load = (l: LoadAverage) => l.map((x) => x.toFixed(2)).join(' / ');
const loadStamp = (l: LoadStamp) => `${load(l.start)} → ${load(l.end)}`;

/** The compact table `npm run bench` prints. */
export function summaryTable(results: BenchResults): string {
  const rows: [string, string, string][] = [];
  const sched = results.scheduling?.result;
  if (sched) {
    rows.push(['scheduling: makespan ÷ critical path', `${s(sched.ratio)} (${s(sched.makespanS)} s ÷ ${s(sched.criticalPathS)} s)${runsNote(sched)}`, load(sched.load.start)]);
    rows.push(['scheduling: wave-by-wave ÷ critical path', `${s(sched.waveRatio)} (${s(sched.waveS)} s)`, '']);
    rows.push(['scheduling: per-step overhead (mean / p90)', `${s(sched.overheadS.mean)} s / ${s(sched.overheadS.p90)} s`, '']);
    if (sched.cpu) {
      const c = sched.cpu;
      rows.push(['scheduling: CPU engine / spawner / runners / other', `${s(c.engineS, 1)} / ${c.spawnerS !== undefined ? s(c.spawnerS, 1) : '?'} / ${s(c.runnersS, 1)} / ${c.otherS !== undefined ? s(c.otherS, 1) : '?'} s`, '']);
      rows.push(['scheduling: CPU lower bound (run CPU ÷ cores)', `${s(c.lowerBoundS)} s = ${s(c.lowerBoundRatio)} × critical path`, '']);
    }
  }
  const sandbox = results.sandbox?.result;
  if (sandbox) {
    if (sandbox.engineBwrap) rows.push(['sandbox start, bwrap (median / p90)', `${ms(sandbox.engineBwrap.median)} / ${ms(sandbox.engineBwrap.p90)}`, load(sandbox.load.start)]);
    rows.push(['sandbox start, no bwrap (median / p90)', `${ms(sandbox.engineNoBwrap.median)} / ${ms(sandbox.engineNoBwrap.p90)}`, sandbox.engineBwrap ? '' : load(sandbox.load.start)]);
    const cold = sandbox.coldBwrap ?? sandbox.coldNoBwrap;
    if (cold) rows.push([`sandbox start, no warm runner${sandbox.coldBwrap ? ', bwrap' : ''} (median / p90)`, `${ms(cold.median)} / ${ms(cold.p90)}`, '']);
    rows.push(['env -i node -e 0 (median / p90)', `${ms(sandbox.nodeBare.median)} / ${ms(sandbox.nodeBare.p90)}`, '']);
    rows.push(['runner module load: wall / CPU (median)', `${ms(sandbox.runnerLoad.median)} / ${ms(sandbox.runnerLoadCpu.median)}`, '']);
  }
  const tr = results.transitions?.result;
  if (tr) {
    const batches = tr.batches !== undefined ? ` + ${tr.batches} (1 per batch of 40)` : '';
    rows.push([`transitions per ${tr.steps}-step deployment`, `${tr.perDeployment} = ${tr.fixed} fixed${batches} + ${s(tr.perStep, 1)} × ${tr.steps}`, load(tr.load.start)]);
    rows.push(['Step Functions price', `$${tr.priceUsdPerDeployment.toFixed(5)} per deployment, $${s(tr.priceUsdPer1000Deployments)} per 1,000`, '']);
  }
  const cold = results.coldstart?.result;
  if (cold) {
    for (const on of cold.on.filter((c) => !c.error)) {
      const off = cold.off.find((c) => c.workflow === on.workflow && !c.error);
      // Each pre-start run after off, tightest cap first: its ratio, and its idle Fargate seconds.
      const runs = [
        ...(cold.tight ?? []).filter((c) => c.workflow === on.workflow && !c.error).map((c) => ({ c, name: `cap ${TIGHT_CAP}` })),
        { c: on, name: `cap ${cold.maxWaiting}` },
        ...(cold.uncapped ?? []).filter((c) => c.workflow === on.workflow && !c.error).map((c) => ({ c, name: `cap ${c.steps}` })),
      ];
      rows.push([
        `coldstart ${on.workflow}: makespan ÷ critical path off → ${runs.map((r) => r.name).join(' → ')}`,
        `${off ? s(off.ratio) : '?'} → ${runs.map((r) => s(r.c.ratio)).join(' → ')} (idle ${runs.map((r) => s(r.c.idleSandboxFargateS, 0)).join(' / ')} Fargate s)`,
        load(on.load.start),
      ]);
    }
  }
  const header: [string, string, string] = ['figure', 'value', 'load 1/5/15 min'];
  const widths = [0, 1, 2].map((i) => Math.max(...[header, ...rows].map((r) => r[i]!.length)));
  const line = (r: [string, string, string]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(header), widths.map((w) => '─'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

function summaryRow(name: string, x: Summary, unit: (v: number) => string): string {
  return `| ${name} | ${unit(x.median)} | ${unit(x.p90)} | ${unit(x.mean)} | ${unit(x.min)} | ${unit(x.max)} | ${x.n} |`;
}

function machineSection(results: BenchResults): string {
  const rows = (['scheduling', 'sandbox', 'transitions'] as const)
    .map((key) => {
      const m = results[key];
      if (!m) return undefined;
      const l = m.result.load;
      return `| ${key} | ${m.date} | ${m.machine.cpu} | ${m.machine.cores} | ${m.machine.node} | ${loadStamp(l)} |`;
    })
    .filter((r): r is string => r !== undefined);
  return [
    '| benchmark | date (UTC) | CPU | cores | Node | load average 1/5/15 min, start → end |',
    '|---|---|---|---|---|---|',
    ...rows,
  ].join('\n');
}

/** ", the median of N runs (min–max)" when the figure is a repeated run's median; the rest of the figures are that run's. */
function runsNote(r: SchedulingResult): string {
  if (!r.runs || r.runs.length < 2) return '';
  const ratios = r.runs.map((x) => x.ratio);
  return `, the median of ${r.runs.length} runs (${s(Math.min(...ratios))}–${s(Math.max(...ratios))})`;
}

/** The row listing every run of a repeated measurement (with its newline), or nothing for a single run. */
function runsRow(r: SchedulingResult): string {
  if (!r.runs) return '';
  const each = r.runs.map((x) => `${s(x.ratio)} (${x.lowerBoundRatio !== undefined ? s(x.lowerBoundRatio) : '?'}; ${s(x.loadStart[0])})`);
  return `| each run, in order: makespan ÷ critical path (CPU lower bound ÷ critical path; load at its start) | ${each.join(', ')} |\n`;
}

function schedulingSection(m: Measured<SchedulingResult> | undefined, sandbox: SandboxStartResult | undefined): string {
  if (!m) return '## 1. Scheduling overhead\n\nNot measured yet: `npm run bench -- --only scheduling`.\n';
  const r = m.result;
  const p = r.phasesS;
  const parts: [string, number][] = [
    ['RunTask ahead of the release (pre-start; negative: after it)', p.lead],
    ['RunTask → its runner ready (boot queue, then the boot)', p.boot],
    ['sandbox up (first heartbeat) ahead of the release', p.upAhead],
    ['release → the runner starts the action (the wake at the release, or the poll, that lets it see it; secrets, decrypt; a sandbox not yet up: its start too)', p.seen],
    ['… the same, for the sandboxes up before their release', p.seenWhenUp],
    ['the action minus the sleep (`sh -c`, log flush, SendTaskSuccess)', p.action],
    ['SendTaskSuccess → recorded (RecordStepResult)', p.record],
  ];
  const cores = m.machine.cores;
  const runnerCpu = sandbox ? sandbox.runnerLoadCpu.median / 1000 : undefined;
  const sandboxCpu = runnerCpu !== undefined ? r.steps * runnerCpu : undefined;
  return `## 1. Scheduling overhead

| figure | value |
|---|---|
| DAG | seed ${r.seed}: ${r.steps} \`run\` steps, ${r.edges} edges, ${r.levels} levels |
| critical path (Σ sleeps on the longest chain) | **${s(r.criticalPathS)} s** over ${r.criticalPathSteps} steps |
| makespan (first step started → last step ended) | **${s(r.makespanS)} s** |
| **makespan ÷ critical path** (ideal 1.00; issue 12's goal ≤ 1.5 on an idle machine) | **${s(r.ratio)}**${runsNote(r)} |
${runsRow(r)}| wave-by-wave scheduler ÷ critical path (sleeps only) | ${s(r.waveRatio)} (${s(r.waveS)} s) |
| per-step overhead (step duration − its sleep): mean / median / p90 / max | ${s(r.overheadS.mean)} / ${s(r.overheadS.median)} / ${s(r.overheadS.p90)} / ${s(r.overheadS.max)} s |
| critical path of the *measured* step durations | ${s(r.criticalPathMeasuredS)} s (makespan ÷ this = ${s(r.makespanS / r.criticalPathMeasuredS)}) |
| wave-by-wave with the measured durations | ${s(r.waveMeasuredS)} s |
| release delay (all dependencies ended → step released): mean / median / p90 / max | ${s(r.releaseDelayS.mean)} / ${s(r.releaseDelayS.median)} / ${s(r.releaseDelayS.p90)} / ${s(r.releaseDelayS.max)} s |
| release delay, steps 1–40 / 41–${r.steps} in topological order (mean; the first batch / the later ones, a single Map of 40 slots before batches) | ${s(r.releaseDelayByIterationS.first40)} / ${s(r.releaseDelayByIterationS.rest)} s |
| longest release delays | ${r.worstReleases.map((w) => `${w.stepId} (iteration ${w.iteration + 1}) ${s(w.delayS)} s`).join(', ')} |
| most steps running at once | ${r.maxRunning} (each batch's Map: MaxConcurrency 40) |
| CPU used by the engine process during the run | ${s(r.engineCpuS, 1)} s (${s(r.engineCpuS / r.steps)} s per step) |
| ${
    r.cpu
      ? `CPU of the runners (${r.cpu.runners}, the system steps' included), measured: all / their boots | ${s(r.cpu.runnersS, 1)} s / ${s(r.cpu.perRunnerS.boot * r.cpu.runners, 1)} s`
      : `CPU of the sandboxes' start-ups, at least (steps × runner module load CPU, section 2) | ${sandboxCpu !== undefined ? `${s(sandboxCpu, 1)} s` : 'run section 2'}`
  } |
| state transitions of this execution | ${r.transitions} |
| load average at start → end | ${loadStamp(r.load)} |

Where a step's time goes (means over the ${r.steps} steps; mean sleep ${s(r.meanSleepS)} s). The sandboxes
are pre-started, so most of a start should come before the release; ${r.upAfterRelease} of ${r.steps} sandboxes were up
only after their release, and their start was on the step's path:

| phase | mean |
|---|---|
${parts.map(([name, v]) => `| ${name} | ${s(v)} s |`).join('\n')}

**What dominates.** The measured step durations (release → recorded) give a critical path of
${s(r.criticalPathMeasuredS)} s (${s(r.criticalPathMeasuredS / r.criticalPathS)}× the sleeps), and the scheduler adds
${s(r.makespanS / r.criticalPathMeasuredS)}× on top (release delays). A step's own overhead is the time from its
release to its action (${s(p.seen)} s on average; ${s(p.seenWhenUp)} s when its sandbox was already up, which is the wake that tells it of
the release (locally; on Fargate its poll) plus the secrets' read and the decrypt) and its answer and record. Each sandbox is a fresh Node
process that loads the bundled runner${
    runnerCpu !== undefined ? ` (${s(runnerCpu)} s of CPU per start, section 2)` : ''
  }; at most as many load at once as there are cores, so a burst of pre-starts queues (RunTask → ready ${s(p.boot)} s on
average), and a sandbox still queued at its release puts its whole start on the critical path. The engine process spent
${s(r.engineCpuS, 1)} s of CPU on the run${
    r.cpu
      ? `, the runners ${s(r.cpu.runnersS, 1)} s: ≥ ${s(r.cpu.lowerBoundS, 1)} s on ${r.cpu.cores} cores against a ${s(r.criticalPathS)} s critical path (ratio ≥ ${s(r.cpu.lowerBoundRatio)}, table below)`
      : sandboxCpu !== undefined
      ? `; with at least ${s(sandboxCpu, 1)} s in sandbox start-ups that is ≥ ${s((r.engineCpuS + sandboxCpu) / cores, 1)} s on ${cores} idle cores
against a ${s(r.criticalPathS)} s critical path (ratio ≥ ${s((r.engineCpuS + sandboxCpu) / cores / r.criticalPathS)} before any other load)`
      : ''
  }: on this machine the makespan is bounded by CPU as much as by the DAG (load ${load(r.load.start)} at the start).
At most ${r.maxRunning} steps ran at once.
${r.cpu ? cpuTable(r.cpu, r) : ''}`;
}

/** Where the run's CPU went, measured (results from before it was: nothing). */
function cpuTable(c: RunCpu, r: SchedulingResult): string {
  const share = (v: number) => (c.machineBusyS ? ` (${Math.round((100 * v) / c.machineBusyS)} %)` : '');
  const per = c.perRunnerS;
  return `
Where the run's CPU went (user + system seconds, submit → end seen by the bench, ${s(c.windowS, 1)} s of wall time on ${c.cores} cores;
the runners' figures are each runner's own account of its life in its last log line, sandbox/cpuUsage.ts):

| consumer | CPU |
|---|---|
| engine process (services, Lambda handlers, state machine, API) | ${s(c.engineS, 1)} s${share(c.engineS)} |
| sandbox spawner | ${c.spawnerS !== undefined ? `${s(c.spawnerS, 1)} s${share(c.spawnerS)}` : 'not measured'} |
| ${c.runners} runners: boot + after ready + the action's processes | ${s(c.runnersS, 1)} s${share(c.runnersS)} |
| … per runner: boot (modules, clients) / own after ready (register, poll, secrets, decrypt, answer) / its processes (\`sh\`, \`sleep\`) | ${ms(per.boot * 1000)} / ${ms(per.afterReady * 1000)} / ${ms(per.children * 1000)} = ${ms(per.total * 1000)} |
| this run, all of the above | **${s(c.ownS, 1)} s** |
| the machine, all cores busy (/proc/stat) | ${c.machineBusyS !== undefined ? `${s(c.machineBusyS, 1)} s of ${s(c.windowS * c.cores, 1)} s` : 'not measured'} |
| … everything else: other processes, bwrap, the kernel | ${c.otherS !== undefined ? `${s(c.otherS, 1)} s` : 'not measured'} |
| **CPU lower bound on the makespan**: this run's CPU ÷ ${c.cores} cores | **${s(c.lowerBoundS)} s = ${s(c.lowerBoundRatio)} × the critical path** (measured makespan ${s(r.makespanS)} s = ${s(r.ratio)} ×) |

${
    c.lowerBoundRatio >= 1.5
      ? `With this much CPU not even a perfect scheduler reaches 1.5 × the critical path (${s(1.5 * r.criticalPathS)} s) on ${c.cores} cores: only cutting CPU helps. (Measured at load ${load(r.load.start)}: a process's CPU for the same work grows on a loaded machine, so the idle machine's bound is lower.)`
      : `The run's own CPU allows ${s(c.lowerBoundRatio)} × the critical path on idle cores; the rest of the ${s(r.ratio)} × is waiting (dependencies, boots queued behind the cap, polls)${
          c.otherS !== undefined && c.otherS > 0.1 * c.ownS ? ` and the other load (${s(c.otherS, 1)} s of CPU in the window)` : ''
        }.`
  }
`;
}

function sandboxSection(m: Measured<SandboxStartResult> | undefined): string {
  if (!m) return '## 2. Sandbox start\n\nNot measured yet: `npm run bench -- --only sandbox`.\n';
  const r = m.result;
  const rows = [
    r.engineBwrap ? summaryRow('engine: RunTask → first heartbeat, bwrap', r.engineBwrap, ms) : undefined,
    summaryRow(`engine: RunTask → first heartbeat, no bwrap${r.engineBwrap ? '' : ' (bwrap not usable here)'}`, r.engineNoBwrap, ms),
    r.coldBwrap ? summaryRow('engine, no runner warm: RunTask → first heartbeat, bwrap', r.coldBwrap, ms) : undefined,
    r.coldNoBwrap ? summaryRow('engine, no runner warm: RunTask → first heartbeat, no bwrap', r.coldNoBwrap, ms) : undefined,
    r.runnerBoot ? summaryRow('engine: a runner\'s boot, spawned → ready for its task', r.runnerBoot, ms) : undefined,
    summaryRow('`env -i node -e 0`, spawn → exit', r.nodeBare, ms),
    r.nodeBwrap ? summaryRow('`bwrap … node -e 0`, spawn → exit', r.nodeBwrap, ms) : undefined,
    summaryRow('`env -i node runner.cjs` (module load only, code cache), spawn → exit', r.runnerLoad, ms),
    summaryRow('… its CPU time (user + sys)', r.runnerLoadCpu, ms),
    r.runnerLoadNoCache ? summaryRow('the same without its code cache, spawn → exit', r.runnerLoadNoCache, ms) : undefined,
    r.runnerLoadNoCacheCpu ? summaryRow('… its CPU time (user + sys)', r.runnerLoadNoCacheCpu, ms) : undefined,
  ].filter((x): x is string => x !== undefined);
  const start = r.engineBwrap ?? r.engineNoBwrap;
  return `## 2. Sandbox start

| measurement | median | p90 | mean | min | max | n |
|---|---|---|---|---|---|---|
${rows.join('\n')}

Load average at start → end: ${loadStamp(r.load)}.

Starting Node itself takes ${ms(r.nodeBare.median)}; loading the bundled runner (AWS SDK v3 clients for
DynamoDB, KMS and Step Functions built from the packages' ES modules, so only the commands it sends are
in it, zod/mini for its settings, Powertools; about 0.5 MB of CommonJS, while each action and the cloud
driver, with ssh2, yaml and zod's full API, are files of their own loaded only by the step that needs them) takes ${ms(r.runnerLoad.median)} (${ms(r.runnerLoadCpu.median)} of CPU)${
    r.runnerLoadNoCacheCpu
      ? `, against ${ms(r.runnerLoadNoCacheCpu.median)} of CPU without V8's code cache: the cache, built once per
Node binary and bundle when the engine starts (at image build for Fargate), spares each sandbox compiling
the runner (sandbox/codeCache.ts). The rest is the SDK's and Node's own modules running their top level`
      : ''
  }. The engine keeps two runners started
ahead of need, each with its modules loaded and its clients built, waiting for exactly one task on stdin;
its first heartbeat needs only the task token, so the median ${ms(start.median)} from RunTask to the first
heartbeat is the hand-over and one SendTaskHeartbeat round trip (the claim's reads and write run beside it).
When tasks arrive faster than runners start, the boot counts again: the rows without a warm runner are that
whole start, spawn to first heartbeat. Runners then go to tasks as they become ready, steps already released
before sandboxes pre-started for later steps.${
    r.engineBwrap && r.nodeBwrap
      ? ` bwrap costs ${ms(r.nodeBwrap.median - r.nodeBare.median)} on a bare start and ${ms(r.engineBwrap.median - r.engineNoBwrap.median)} at the median inside the engine.`
      : ''
  }
`;
}

function transitionsSection(m: Measured<TransitionsResult> | undefined): string {
  if (!m) return '## 3. State transitions and price\n\nNot measured yet: `npm run bench -- --only transitions`.\n';
  const r = m.result;
  const states = Object.entries(r.byState)
    .map(([name, n]) => `| ${name} | ${n} |`)
    .join('\n');
  return `## 3. State transitions and price

A succeeded ${r.steps}-step linear deployment (each step \`true\`), counted from
\`GET /deployments/{id}/history\`: every \`*StateEntered\` event is one billed transition, the
states inside RunWorkflow's iterations included.

| figure | value |
|---|---|
| transitions per ${r.steps}-step deployment | **${r.perDeployment}** |
| fixed part (Prepare, OpenAndRun: bastion-open, ReleaseRoots and the Map itself, Summarize, Cleanup, outcome) | ${r.fixed} |
${r.batches !== undefined ? `| per batch of up to 40 steps (its Map RunBatch; ${r.steps} steps are ${r.batches} batch${r.batches === 1 ? '' : 'es'}) | 1 |
` : ''}| per workflow step (one Map iteration) | ${s(r.perStep, 1)} |
| check: a 1-step deployment | ${r.oneStep} (fixed${r.batches !== undefined ? ' + 1 batch' : ''} + per-step = ${s(r.fixed + (r.batches !== undefined ? 1 : 0) + r.perStep, 1)}) |
| **Step Functions price per ${r.steps}-step deployment** at $0.025 per 1,000 transitions | **$${r.priceUsdPerDeployment.toFixed(5)}** |
| per 1,000 such deployments | **$${s(r.priceUsdPer1000Deployments)}** |

Transitions by state:

| state | entered |
|---|---|
${states}

So a deployment of *n* succeeded steps costs ${r.fixed}${r.batches !== undefined ? ' + ⌈*n*/40⌉' : ''} + ${s(r.perStep, 1)}·*n* transitions${r.batches !== undefined ? ' (the ⌈*n*/40⌉: each batch of 40 steps is an inline Map of its own, so every step has its iteration at once)' : ''}. A failing step takes
RecordStepFailure, NeedsGrace and possibly GracePeriod/AbortStragglers instead of RecordStepResult,
and every Retry attempt is one more transition. Not included: the free tier (4,000 transitions a
month), Lambda, DynamoDB, KMS and Fargate. For scale, a 0.25 vCPU / 0.5 GB Fargate task costs about
$0.0002 a minute (us-east-1, Linux/x86), so a deployment of ten one-minute steps pays more for its
sandboxes than for its transitions.
`;
}

function coldstartRow(mode: string, c: ColdstartCase): string {
  if (c.error) return `| ${c.workflow} | ${mode} | failed: ${c.error.replaceAll('|', '/')} | | | | | | | ${loadStamp(c.load)} |`;
  return `| ${c.workflow} | ${mode} | ${s(c.criticalPathS)} s | ${s(c.makespanS)} s | **${s(c.ratio)}** | ${s(c.ratioToLimit)} | ${s(c.startsLost, 1)} | ${s(c.idleSandboxS, 1)} s (${s(c.idleSandboxFargateS, 0)} s) | ${c.peakWaiting ?? '–'} | ${loadStamp(c.load)} |`;
}

/** The lookahead by time: each workflow's first run (nothing to learn from) against its second, on one engine. */
function rerunTable(r: ColdstartResult): string {
  if (!r.rerun?.length) return '';
  const rows = r.rerun.map((c) =>
    c.error || !c.firstRun
      ? `| ${c.workflow} | failed: ${(c.error ?? 'no first run').replaceAll('|', '/')} | | | | ${loadStamp(c.load)} |`
      : `| ${c.workflow} | ${s(c.criticalPathS)} s | ${s(c.firstRun.makespanS)} s → ${s(c.makespanS)} s | ${s(c.firstRun.idleSandboxS, 1)} s → ${s(c.idleSandboxS, 1)} s | ${s(c.firstRun.idleSandboxFargateS, 0)} s → ${s(c.idleSandboxFargateS, 0)} s | ${loadStamp(c.load)} |`,
  );
  return `
**Re-runs: the lookahead by time.** Pre-start on (cap ${r.maxWaiting}) with \`startSeconds\` the simulated p90 on the
engine's clock, each workflow deployed twice on one engine: the second run reads the first one's step durations and
starts a sandbox whose dependencies are only pre-started once its release is expected within two starts
(docs/ARCHITECTURE.md, "Lookahead by time"). slow3 is a chain of 3 steps of ${SLOW_STEP_S} s, longer than two starts.

| workflow | critical path | makespan, first → second run | idle sandbox-s | idle Fargate s | load 1/5/15 min, start → end (second run) |
|---|---|---|---|---|---|
${rows.join('\n')}
`;
}

function coldstartSection(m: Measured<ColdstartResult> | undefined): string {
  if (!m) return '## 4. Cold starts (pre-start off → on)\n\nNot measured yet: `npm run bench -- --only coldstart`.\n';
  const r = m.result;
  const rows = r.on.flatMap((on) => {
    const off = r.off.find((c) => c.workflow === on.workflow);
    const tight = r.tight?.find((c) => c.workflow === on.workflow);
    const uncapped = r.uncapped?.find((c) => c.workflow === on.workflow);
    return [
      ...(off ? [coldstartRow('off', off)] : []),
      ...(tight ? [coldstartRow(`on, cap ${TIGHT_CAP}`, tight)] : []),
      coldstartRow(`on, cap ${r.maxWaiting}`, on),
      ...(uncapped ? [coldstartRow(`on, cap ${uncapped.steps}`, uncapped)] : []),
    ];
  });
  const measured = (w: string) => r.on.some((c) => c.workflow === w && !c.error);
  const verdict = (g: { limitS: number; met: boolean }, w: string) =>
    measured(w) ? `${g.met ? 'met' : '**not met**'} (limit ${s(g.limitS)} s)` : 'not measured in this run';
  return `## 4. Cold starts (pre-start off → on)

Local ECS draws every sandbox's start from a log-normal with Fargate's median ${r.startMedianS} s and
p90 ${r.startP90S} s, times the time scale ${r.timeScale} (median ${s(r.scaledMedianS)} s on the engine's clock;
the same seeded draws in every mode). Step sleeps are not scaled. One run, one engine per mode:
\`prestart: false\`, then \`prestart: { maxWaiting: ${r.maxWaiting} }\` (the default; CTD_PRESTART / CTD_PRESTART_MAX_WAITING),
then, for a workflow larger than ${TIGHT_CAP} steps, \`maxWaiting: ${TIGHT_CAP}\` (the default until 2026-11-30), and for one
larger than the default cap, \`maxWaiting\` as large as the workflow (every sandbox may start ahead).
Makespan: bastion-open ended → last workflow step ended. The physical limit is critical path + one start.

| workflow | pre-start | critical path | makespan | ÷ critical path | ÷ (critical path + 1 start) | starts lost | idle sandbox-s (Fargate s) | most waiting at once | load 1/5/15 min, start → end |
|---|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}

Goals (pre-start on, the default cap): 10-step chain ≤ critical path + 1.3 × one start: ${verdict(r.goals.chain, 'chain10')};
60-step DAG ≤ 1.3 × (critical path + one start): ${verdict(r.goals.dag, 'dag60')}${
    r.goals.dagTight ? `; under a cap of ${TIGHT_CAP}: ${r.goals.dagTight.met ? 'met' : '**not met**'} (limit ${s(r.goals.dagTight.limitS)} s)` : ''
  }${r.goals.dagUncapped ? `; with every sandbox allowed to start ahead: ${r.goals.dagUncapped.met ? 'met' : '**not met**'} (limit ${s(r.goals.dagUncapped.limitS)} s)` : ''}.
What the cap decides: a pre-started sandbox holds its place under the cap from its start to its step's
release, and it hides as much of its start as it held the place. The DAG's steps (0.2–1 s) are far shorter than a
start, so nearly every one of its 60 steps needs a whole start hidden: about 60 starts of place-seconds. Under a cap
of ${TIGHT_CAP}, one start of them before bastion-open ends, the makespan cannot fall much below (60 ÷ ${TIGHT_CAP} − 1) starts plus
the DAG's tail, whatever the order the places are given in; under a cap the workflow fits in, every sandbox starts at
once. "Most waiting at once" is the peak of sandboxes between pre-start and release, read from the steps' records:
the cap holds. The default cap (${r.maxWaiting}) bounds how many Fargate tasks one deployment's pre-starts hold at once,
against the account's vCPU quota and Fargate's launch burst of 100 tasks (docs/DEPLOY-AWS.md); what they cost idling
is bounded per sandbox by the idle limit (${DEFAULT_PRESTART_MAX_IDLE_SECONDS} s, \`ctd:prestartMaxIdleSeconds\`) and is the idle column here, which
every deployment reports. An account with a small vCPU quota lowers the cap (\`cdk deploy -c ctd:prestartMaxWaiting=…\`,
docs/DEPLOY-AWS.md), at the cost the cap-${TIGHT_CAP} rows show.
The 200 independent steps have no dependency to hide a start behind, but every step has its Map
iteration from the start (batches of 40, each a Map of its own), so their starts overlap instead of
coming in five waves; here they then queue for 2 cores (one runner boot per core at a time). With
pre-start off all 200 RunTasks come at once; on a loaded machine the last sandboxes can stay queued past the
heartbeat limit (300 s × the time scale, 60 s here), which fails their steps: a limit of this
machine, not of Fargate, which starts them side by side (docs/ARCHITECTURE.md, "Map slots"). The engine's
Lambdas keep their 60 s limits at any time scale: they compute, and locally share 2 cores with 200 runners
(docs/ARCHITECTURE.md, "Time scale").
${rerunTable(r)}
Measured ${m.date}.
`;
}

export function renderMarkdown(results: BenchResults): string {
  return `# Benchmarks

Written by \`npm run bench\` (\`bench/run.ts\`); do not edit by hand. The figures come from the
embedded local engine (\`local/engine.ts\`): the production ASL, Lambda handlers and step runner, with
sandboxes as local processes. Other work on the machine inflates them; each figure carries the
load average it was measured under.

Reproduce:

\`\`\`sh
npm run bench                               # all four, about 10–20 minutes
npm run bench -- --only scheduling          # or sandbox, transitions, coldstart
npm run bench -- --only coldstart --time-scale 0.1   # a faster simulated Fargate start
npm run bench -- --seed 7 --runs 20         # another DAG, more sandbox starts
npm run bench -- --only scheduling --scheduling-runs 5   # the median of 5 runs (default 3)
\`\`\`

## Machine

${machineSection(results)}

## At a glance

\`\`\`
${summaryTable(results)}
\`\`\`

${schedulingSection(results.scheduling, results.sandbox?.result)}
${sandboxSection(results.sandbox)}
${transitionsSection(results.transitions)}
${coldstartSection(results.coldstart)}
## Method

- **Engine.** One \`startLocalEngine\` per run, on a temp state dir, \`apiPort: 0\` and a loopback
  block of its own (as \`test/helpers/engine.ts\`), so it runs beside test engines. Deployments go
  through the HTTP API with a minted token, like a user's.
- **Scheduling.** A DAG from a seeded mulberry32 PRNG: step *i* sleeps 0.2–1.0 s (\`sleep 0.37\`)
  and depends on 0–3 distinct earlier steps. Critical path and levels come from \`planWorkflow\`
  (\`core/dag.ts\`) with the sleeps as weights; the wave figure is Σ over levels of the longest
  sleep. Makespan and step durations are the \`startedAt\`/\`endedAt\` of the workflow steps in
  \`GET /deployments/{id}\` (bastion-open/close excluded).
- **Probes** (bench only, production code unchanged): \`engine.sandboxes.runTask\` is wrapped to
  time RunTask, the launcher's runner spawn to time each runner's boot (spawned → its ready line),
  and \`LocalStepFunctions.prototype.sendTaskHeartbeat\`/\`sendTaskSuccess\` to time when the
  runner's first heartbeat and its success reach the state machine.
- **Sandbox start.** An engine of its own with pre-start off, so one sandbox starts at a time: with
  pre-start on, a chain's steps all start ahead (up to 20 at once) and the figure would be their
  contention for 2 cores. Two chains of \`true\` steps: with the launcher's two warm runners (as the
  engine runs), then with none, so each RunTask spawns its runner. Runners alternate bwrap on/off
  (each trace reads the runner's real isolation), so both modes share the machine's load. Bare
  spawns are timed spawn → exit with an empty environment (\`env -i\`).
- **Transitions.** \`*StateEntered\` events of the execution history, split into top-level and
  Map-iteration states by reading \`statemachine/deployment.asl.json\`.
- **Cold starts.** Two engines in turn (pre-start off, then on), each with
  \`sandboxStartLatency: { median: 45, p90: 60 }\` × the time scale (\`--time-scale\`, default 0.2):
  local ECS holds each task's hand-over for one log-normal draw (seeded, the same sequence in both
  modes). Workflows: a 10-step chain and the 60-step seeded DAG (sleeps 0.2–1.0 s), and 200
  independent steps of \`sleep 0.5\`. Idle sandbox-seconds are the deployment's
  \`idleSandboxSeconds\` (Σ of \`readyAt\` → release); the Fargate figure divides by the time scale.
  The per-step engine overhead of a loaded 2-core machine (Lambda handlers, local DynamoDB, the
  runner's own CPU) is not scaled and adds to every step of a chain in both modes.
- **Load.** Before each benchmark the run waits (bounded) for the 1-minute load average to drop
  below the core count; \`os.loadavg()\` is recorded at the start and end of each.
`;
}
