import { parseArgs } from 'node:util';
import { loadAverage, machine, startBenchEngine, waitForCalm, type BenchEngine } from './harness.ts';
import { loadResults, saveResults, summaryTable, type BenchResults } from './report.ts';
import { DEFAULT_PRESTART_MAX_WAITING } from '../adapters/aws/engineDeps.ts';
import { COLDSTART_MODES, COLDSTART_WORKFLOWS, runColdstart, type ColdstartCase, type ColdstartResult } from './coldstart.ts';
import { runSandboxStart } from './sandboxStart.ts';
import { medianRun, runScheduling, type SchedulingResult } from './scheduling.ts';
import { runTransitions } from './transitions.ts';

/**
 * `npm run bench [-- --only scheduling|sandbox|transitions|coldstart] [--seed N] [--runs N] [--scheduling-runs N] [--time-scale X]`
 * `[--workflows chain10,dag60,independent200,slow3] [--modes off,on,tight,uncapped,rerun]` (coldstart only: a quicker partial run; combine with --no-write)
 */

const BENCHMARKS = ['sandbox', 'scheduling', 'transitions', 'coldstart'] as const;
type Benchmark = (typeof BENCHMARKS)[number];

const DEFAULT_SEED = 20240611;

async function main(): Promise<void> {
  // The SDK's notice about Node 22 in 2027 would otherwise open the output (the engine sets the same).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      seed: { type: 'string', default: String(DEFAULT_SEED) },
      steps: { type: 'string', default: '60' },
      runs: { type: 'string', default: '15' },
      // The same DAG run again on the same engine: the figure written is the median run's.
      'scheduling-runs': { type: 'string', default: '3' },
      'calm-wait': { type: 'string', default: '20' },
      'no-write': { type: 'boolean', default: false },
      // Fargate's 45 s start × this on the engine's clock (coldstart); 0.2 keeps a run to minutes and Lambda limits (60 s → 12 s) clear of a loaded machine.
      'time-scale': { type: 'string', default: '0.2' },
      'max-waiting': { type: 'string', default: String(DEFAULT_PRESTART_MAX_WAITING) },
      workflows: { type: 'string' },
      modes: { type: 'string' },
    },
    strict: true,
  });
  if (values.only !== undefined && !BENCHMARKS.includes(values.only as Benchmark)) {
    throw new Error(`--only must be one of ${BENCHMARKS.join(', ')}`);
  }
  const selected = BENCHMARKS.filter((b) => values.only === undefined || values.only === b);
  const seed = positive('seed', values.seed);
  const steps = positive('steps', values.steps);
  const runs = positive('runs', values.runs);
  const schedulingRuns = positive('scheduling-runs', values['scheduling-runs']);
  const calmWaitMs = Number(values['calm-wait']) * 1000;
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const host = machine();
  log(`${host.cpu} · ${host.cores} cores · Node ${host.node} · load ${loadAverage().join(' ')} · seed ${seed}`);

  const results: BenchResults = loadResults();
  const stamp = () => ({ date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'), machine: host });
  // One local engine at a time: each points this process's SDK environment (endpoints) at its own services,
  // so an engine started beside another would leave the first one's clients calling services that are gone.
  let shared: BenchEngine | undefined;
  const sharedEngine = async () => (shared ??= await startBenchEngine());
  const stopShared = async () => {
    await shared?.stop();
    shared = undefined;
  };
  try {
    for (const name of selected) {
      await waitForCalm(host.cores, calmWaitMs, log);
      const t0 = Date.now();
      log(`▶ ${name}`);
      if (name === 'sandbox') {
        await stopShared();
        // One start at a time: pre-started sandboxes would boot together and measure their contention (bench/sandboxStart.ts).
        const alone = await startBenchEngine({ prestart: false });
        try {
          results.sandbox = { ...stamp(), result: await runSandboxStart(alone, { runs, log }) };
        } finally {
          await alone.stop();
        }
      }
      if (name === 'scheduling') {
        const each: SchedulingResult[] = [];
        for (let i = 0; i < schedulingRuns; i++) {
          if (i > 0) await waitForCalm(host.cores, calmWaitMs, log);
          each.push(await runScheduling(await sharedEngine(), { seed, steps, log }));
          if (schedulingRuns > 1) log(`scheduling run ${i + 1} of ${schedulingRuns}: makespan ÷ critical path ${each[i]!.ratio}`);
        }
        results.scheduling = { ...stamp(), result: medianRun(each) };
      }
      if (name === 'coldstart') {
        await stopShared();
        const timeScale = Number(values['time-scale']);
        if (!(timeScale > 0 && timeScale <= 1)) throw new Error('--time-scale must be a number in (0, 1]');
        const progress = async (partial: ColdstartResult) => {
          results.coldstart = { ...stamp(), result: partial };
          if (!values['no-write']) await saveResults(results);
        };
        const workflows = listOf('workflows', values.workflows, COLDSTART_WORKFLOWS);
        const modes = listOf('modes', values.modes, COLDSTART_MODES);
        await progress(
          await runColdstart({
            seed,
            timeScale,
            maxWaiting: positive('max-waiting', values['max-waiting']),
            log,
            progress,
            ...(workflows ? { workflows: workflows as ColdstartCase['workflow'][] } : {}),
            ...(modes ? { modes } : {}),
          }),
        );
      }
      if (name === 'transitions') results.transitions = { ...stamp(), result: await runTransitions(await sharedEngine(), { steps: 10, log }) };
      log(`✔ ${name} in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  } catch (e) {
    // A failed request says only "internal error" to its client; the engine's log says why.
    if (shared) log(`engine log, last 60 lines:\n${shared.tail(60)}`);
    throw e;
  } finally {
    await stopShared();
  }
  process.stdout.write(`\n${summaryTable(results)}\n\n`);
  if (!values['no-write']) {
    const written = await saveResults(results);
    process.stdout.write(`wrote ${written.join(', ')}\n`);
  }
}

/** A comma-separated option whose every item must be one of `allowed`; undefined when not given. */
function listOf<T extends string>(name: string, value: string | undefined, allowed: readonly T[]): T[] | undefined {
  if (value === undefined) return undefined;
  const items = value.split(',').map((v) => v.trim());
  const bad = items.filter((v) => !(allowed as readonly string[]).includes(v));
  if (bad.length > 0 || items.length === 0) throw new Error(`--${name} takes a comma-separated list of ${allowed.join(', ')}; got ${bad.join(', ') || 'nothing'}`);
  return items as T[];
}

function positive(name: string, value: string | undefined): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} must be a positive integer`);
  return n;
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
