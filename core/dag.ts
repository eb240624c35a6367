/**
 * Planning of a workflow's dependency graph. Pure functions over step ids, so the API
 * (submit), the validator and the engine agree on one order without knowing about AWS.
 */

/** The part of a step the planner looks at. */
export interface DagStep {
  readonly id: string;
  readonly dependsOn: readonly string[];
}

export interface WorkflowPlan {
  /** Topological order; among steps that are ready at the same time, declaration order wins. */
  readonly order: string[];
  /** Step id → the steps that depend on it directly, in declaration order (every id has an entry). */
  readonly dependents: Record<string, string[]>;
  /** Waves: a step sits one wave after its latest dependency, so each wave could run at once. */
  readonly levels: string[][];
  /** The heaviest dependency chain, first step first; it bounds the workflow's duration. */
  readonly criticalPath: { readonly steps: string[]; readonly weight: number };
}

/**
 * Orders a validated workflow. Throws a plain `Error` on unknown dependencies or cycles:
 * those are user errors that {@link parseDeployment} reports first, so here they are bugs.
 *
 * @param weight cost of a step for the critical path (e.g. its expected seconds); 1 by default.
 */
export function planWorkflow(
  steps: readonly DagStep[],
  weight: (id: string) => number = () => 1,
): WorkflowPlan {
  const index = indexSteps(steps);
  const deps = steps.map((step) => uniqueDeps(step, index));

  const dependents: Record<string, string[]> = Object.create(null) as Record<string, string[]>;
  for (const step of steps) dependents[step.id] = [];
  steps.forEach((step, i) => {
    for (const d of deps[i] ?? []) dependents[steps[d]!.id]!.push(step.id);
  });

  // Kahn's algorithm; the ready list is kept sorted by declaration index so the order is stable.
  const missing = deps.map((d) => d.length);
  const ready: number[] = [];
  missing.forEach((n, i) => n === 0 && ready.push(i));
  const children = steps.map(() => [] as number[]);
  deps.forEach((ds, i) => ds.forEach((d) => children[d]!.push(i)));

  const orderIdx: number[] = [];
  while (ready.length > 0) {
    const next = ready.shift()!;
    orderIdx.push(next);
    for (const child of children[next]!) {
      missing[child]! -= 1;
      if (missing[child] === 0) insertSorted(ready, child);
    }
  }
  if (orderIdx.length !== steps.length) {
    const cycle = findCycle(steps) ?? [];
    throw new Error(`workflow has a dependency cycle: ${cycle.join(' → ')}`);
  }

  const level = new Array<number>(steps.length).fill(0);
  const chainWeight = new Array<number>(steps.length).fill(0);
  const chainPrev = new Array<number>(steps.length).fill(-1);
  for (const i of orderIdx) {
    let best = -1;
    for (const d of deps[i]!) {
      level[i] = Math.max(level[i]!, level[d]! + 1);
      if (best === -1 || chainWeight[d]! > chainWeight[best]!) best = d;
    }
    chainPrev[i] = best;
    chainWeight[i] = weight(steps[i]!.id) + (best === -1 ? 0 : chainWeight[best]!);
  }

  const levels: string[][] = [];
  steps.forEach((step, i) => (levels[level[i]!] ??= []).push(step.id));

  let end = -1;
  steps.forEach((_, i) => {
    if (end === -1 || chainWeight[i]! > chainWeight[end]!) end = i;
  });
  const critical: string[] = [];
  for (let i = end; i !== -1; i = chainPrev[i]!) critical.unshift(steps[i]!.id);

  return {
    order: orderIdx.map((i) => steps[i]!.id),
    dependents: { ...dependents },
    levels,
    criticalPath: { steps: critical, weight: end === -1 ? 0 : chainWeight[end]! },
  };
}

/**
 * Finds one dependency cycle, or `undefined` when there is none. The cycle reads in
 * `dependsOn` direction and repeats its first step at the end (`a → b → a`: a depends on b,
 * b on a), starting from its earliest-declared step so the message is deterministic.
 * Unknown dependencies are ignored (the validator reports them on their own).
 */
export function findCycle(steps: readonly DagStep[]): string[] | undefined {
  const index = indexSteps(steps, false);
  const deps = steps.map((step) => uniqueDeps(step, index, false));
  const WHITE = 0;
  const GREY = 1;
  const BLACK = 2;
  const colour = new Array<number>(steps.length).fill(WHITE);

  // Iterative DFS: the path stack holds the grey nodes, so a back edge closes a cycle on it.
  for (let root = 0; root < steps.length; root++) {
    if (colour[root] !== WHITE) continue;
    const path: number[] = [root];
    const cursor: number[] = [0];
    colour[root] = GREY;
    while (path.length > 0) {
      const top = path.length - 1;
      const node = path[top]!;
      const next = deps[node]![cursor[top]!];
      if (next === undefined) {
        colour[node] = BLACK;
        path.pop();
        cursor.pop();
        continue;
      }
      cursor[top]! += 1;
      if (colour[next] === GREY) return rotateCycle(path.slice(path.indexOf(next))).map((i) => steps[i]!.id);
      if (colour[next] === WHITE) {
        colour[next] = GREY;
        path.push(next);
        cursor.push(0);
      }
    }
  }
  return undefined;
}

function rotateCycle(cycle: number[]): number[] {
  const start = cycle.indexOf(Math.min(...cycle));
  const rotated = [...cycle.slice(start), ...cycle.slice(0, start)];
  return [...rotated, rotated[0]!];
}

function indexSteps(steps: readonly DagStep[], strict = true): Map<string, number> {
  const index = new Map<string, number>();
  steps.forEach((step, i) => {
    if (index.has(step.id)) {
      if (strict) throw new Error(`duplicate step id "${step.id}"`);
      return;
    }
    index.set(step.id, i);
  });
  return index;
}

function uniqueDeps(step: DagStep, index: Map<string, number>, strict = true): number[] {
  const out = new Set<number>();
  for (const dep of step.dependsOn) {
    const i = index.get(dep);
    if (i === undefined) {
      if (strict) throw new Error(`step "${step.id}" depends on unknown step "${dep}"`);
      continue;
    }
    out.add(i);
  }
  return [...out];
}

function insertSorted(list: number[], value: number): void {
  let i = list.length;
  while (i > 0 && list[i - 1]! > value) i--;
  list.splice(i, 0, value);
}
