import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { HistoryEvent } from '../core/model.ts';
import { loadAverage, round, runDeployment, type BenchEngine, type LoadStamp } from './harness.ts';

/**
 * State transitions as Step Functions Standard bills them: every `*StateEntered` event of the
 * execution history is one transition, Map iterations included. The fixed part comes from the
 * top-level states, one more per batch of 40 steps (the Map RunBatch inside RunWorkflow), and the
 * per-step part from the states of RunBatch's item processor.
 */

/** USD per state transition (Standard workflows, us-east-1, after the free tier). */
export const PRICE_PER_TRANSITION = 0.025 / 1000;

export interface TransitionCount {
  total: number;
  /** Transitions outside RunWorkflow's iterations. */
  fixed: number;
  /** The batches' own Map states (RunBatch): one per batch of at most 40 steps. */
  batches: number;
  /** Transitions inside RunWorkflow's iterations. */
  iterations: number;
  byState: Record<string, number>;
}

export interface TransitionsResult {
  load: LoadStamp;
  /** The shape measured: a linear chain of `steps` run steps. */
  steps: number;
  perDeployment: number;
  fixed: number;
  /** Transitions of the batches' Map states (one per batch of 40 steps); absent in results from before batches. */
  batches?: number;
  perStep: number;
  /** A 1-step deployment, to check fixed + per-step × 1. */
  oneStep: number;
  byState: Record<string, number>;
  priceUsdPerDeployment: number;
  priceUsdPer1000Deployments: number;
}

const ASL = fileURLToPath(new URL('../statemachine/deployment.asl.json', import.meta.url));

/**
 * Names of the states inside Map states, read from the production ASL: the per-step part, and the
 * Maps nested in a Map (RunBatch, one per batch).
 */
function iterationStates(): { steps: Set<string>; batches: Set<string> } {
  interface StateNode {
    Type?: string;
    ItemProcessor?: { States: Record<string, StateNode> };
    Iterator?: { States: Record<string, StateNode> };
    Branches?: { States: Record<string, StateNode> }[];
  }
  const definition = JSON.parse(readFileSync(ASL, 'utf8')) as { States: Record<string, StateNode> };
  const names = new Set<string>();
  const batches = new Set<string>();
  const collect = (states: Record<string, StateNode>, inside: boolean) => {
    for (const [name, state] of Object.entries(states)) {
      if (inside) (state.Type === 'Map' ? batches : names).add(name);
      const inner = state.ItemProcessor ?? state.Iterator;
      if (inner) collect(inner.States, true);
      // A Parallel's branches (OpenBastionAccess beside RunWorkflow) are as inside as the Parallel itself.
      for (const branch of state.Branches ?? []) collect(branch.States, inside);
    }
  };
  collect(definition.States, false);
  return { steps: names, batches };
}

export function countTransitions(events: readonly HistoryEvent[]): TransitionCount {
  const inner = iterationStates();
  const byState: Record<string, number> = {};
  let fixed = 0;
  let batches = 0;
  let iterations = 0;
  for (const event of events) {
    if (!event.type.endsWith('StateEntered')) continue;
    const name = (event.stateEnteredEventDetails as { name?: string } | undefined)?.name ?? '?';
    byState[name] = (byState[name] ?? 0) + 1;
    if (inner.steps.has(name)) iterations++;
    else if (inner.batches.has(name)) batches++;
    else fixed++;
  }
  return { total: fixed + batches + iterations, fixed, batches, iterations, byState };
}

export async function runTransitions(bench: BenchEngine, opts: { steps: number; log: (line: string) => void }): Promise<TransitionsResult> {
  const start = loadAverage();
  const chain = Array.from({ length: opts.steps }, (_, i) => ({ id: `t${i + 1}`, command: 'true', ...(i > 0 ? { dependsOn: [`t${i}`] } : {}) }));
  const [linear, single] = await Promise.all([
    bench.client.submit(runDeployment('bench-transitions', chain)),
    bench.client.submit(runDeployment('bench-transitions-1', chain.slice(0, 1))),
  ]);
  const views = await Promise.all([bench.waitForEnd(linear.deploymentId, 180_000), bench.waitForEnd(single.deploymentId, 180_000)]);
  for (const view of views) {
    if (view.status !== 'SUCCEEDED') throw new Error(`transitions deployment ${view.status}: ${view.error ?? ''} ${view.cause ?? ''}\n${bench.tail()}`);
  }
  const [many, one] = await Promise.all([bench.history(linear.deploymentId), bench.history(single.deploymentId)]);
  const count = countTransitions(many.events);
  const oneCount = countTransitions(one.events);
  opts.log(`transitions: ${count.total} for ${opts.steps} steps, ${oneCount.total} for 1 step`);
  return {
    load: { start, end: loadAverage() },
    steps: opts.steps,
    perDeployment: count.total,
    fixed: count.fixed,
    batches: count.batches,
    perStep: round(count.iterations / opts.steps, 2),
    oneStep: oneCount.total,
    byState: count.byState,
    priceUsdPerDeployment: round(count.total * PRICE_PER_TRANSITION, 6),
    priceUsdPer1000Deployments: round(count.total * PRICE_PER_TRANSITION * 1000, 4),
  };
}
