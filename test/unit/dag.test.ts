import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { findCycle, planWorkflow, type DagStep } from '../../core/dag.ts';

const step = (id: string, ...dependsOn: string[]): DagStep => ({ id, dependsOn });

/** Random DAGs: a step may only depend on steps declared before it, shuffled afterwards. */
const dagOf = (maxSteps: number) =>
  fc
  .integer({ min: 1, max: maxSteps })
  .chain((n) =>
    fc.tuple(
      fc.tuple(...Array.from({ length: n }, (_, i) => fc.subarray(Array.from({ length: i }, (__, j) => j)))),
      fc.shuffledSubarray(Array.from({ length: n }, (_, i) => i), { minLength: n, maxLength: n }),
      fc.array(fc.integer({ min: 1, max: 100 }), { minLength: n, maxLength: n }),
    ),
  )
  .map(([deps, permutation, weights]) => {
    const steps = permutation.map((i) => step(`s${i}`, ...(deps[i] ?? []).map((d) => `s${d}`)));
    const weightOf = new Map(steps.map((s, i) => [s.id, weights[i] ?? 1]));
    return { steps, weight: (id: string) => weightOf.get(id) ?? 1 };
  });
const dagArbitrary = dagOf(30);
/** Small enough to enumerate every chain as the oracle. */
const smallDagArbitrary = dagOf(12);

/** Every chain in the DAG, following dependsOn from each step (small graphs only). */
function chainWeights(steps: readonly DagStep[], weight: (id: string) => number): number[] {
  const byId = new Map(steps.map((s) => [s.id, s]));
  const out: number[] = [];
  const walk = (id: string, acc: number) => {
    const total = acc + weight(id);
    out.push(total);
    for (const dep of byId.get(id)?.dependsOn ?? []) walk(dep, total);
  };
  for (const s of steps) walk(s.id, 0);
  return out;
}

describe('Function: planWorkflow', () => {
  it('orders steps after their dependencies, keeping declaration order among ready steps', () => {
    const plan = planWorkflow([step('deploy', 'build', 'infra'), step('infra'), step('build'), step('lint')]);

    expect(plan.order).toEqual(['infra', 'build', 'deploy', 'lint']);
  });

  it('lists direct dependents for every step, including leaves', () => {
    const plan = planWorkflow([step('a'), step('b', 'a'), step('c', 'a', 'b')]);

    expect(plan.dependents).toEqual({ a: ['b', 'c'], b: ['c'], c: [] });
  });

  it('groups steps into waves one after their latest dependency', () => {
    const plan = planWorkflow([step('a'), step('b'), step('c', 'a'), step('d', 'c', 'b'), step('e', 'b')]);

    expect(plan.levels).toEqual([['a', 'b'], ['c', 'e'], ['d']]);
  });

  it('finds the heaviest chain with the given weights', () => {
    const weights: Record<string, number> = { provision: 180, push: 10, config: 60, smoke: 5, docs: 240 };
    const plan = planWorkflow(
      [step('provision'), step('push', 'provision'), step('config', 'provision'), step('smoke', 'push', 'config'), step('docs')],
      (id) => weights[id] ?? 0,
    );

    expect(plan.criticalPath).toEqual({ steps: ['provision', 'config', 'smoke'], weight: 245 });
  });

  it('counts steps on the critical path when no weight is given', () => {
    const plan = planWorkflow([step('a'), step('b', 'a'), step('c', 'b'), step('d')]);

    expect(plan.criticalPath).toEqual({ steps: ['a', 'b', 'c'], weight: 3 });
  });

  it('plans an empty workflow as empty', () => {
    expect(planWorkflow([])).toEqual({ order: [], dependents: {}, levels: [], criticalPath: { steps: [], weight: 0 } });
  });

  it('ignores a dependency listed twice', () => {
    const plan = planWorkflow([step('a'), step('b', 'a', 'a')]);

    expect(plan.dependents).toEqual({ a: ['b'], b: [] });
    expect(plan.criticalPath.weight).toBe(2);
  });

  it('refuses a cycle and names it', () => {
    expect(() => planWorkflow([step('a', 'b'), step('b', 'a')])).toThrow('dependency cycle: a → b → a');
  });

  it('refuses an unknown dependency', () => {
    expect(() => planWorkflow([step('a', 'ghost')])).toThrow('unknown step "ghost"');
  });

  it('puts every step after all of its dependencies in random DAGs', () => {
    fc.assert(
      fc.property(dagArbitrary, ({ steps }) => {
        const { order } = planWorkflow(steps);
        const position = new Map(order.map((id, i) => [id, i]));

        expect([...order].sort()).toEqual(steps.map((s) => s.id).sort());
        for (const s of steps) for (const dep of s.dependsOn) expect(position.get(dep)!).toBeLessThan(position.get(s.id)!);
      }),
    );
  });

  it('reports a critical path at least as heavy as every chain, and itself a chain', () => {
    fc.assert(
      fc.property(smallDagArbitrary, ({ steps, weight }) => {
        const { criticalPath } = planWorkflow(steps, weight);
        const byId = new Map(steps.map((s) => [s.id, s]));

        expect(criticalPath.weight).toBe(Math.max(...chainWeights(steps, weight)));
        expect(criticalPath.steps.reduce((sum, id) => sum + weight(id), 0)).toBe(criticalPath.weight);
        criticalPath.steps.slice(1).forEach((id, i) => expect(byId.get(id)!.dependsOn).toContain(criticalPath.steps[i]));
      }),
    );
  });

  it('places each step one wave after its latest dependency in random DAGs', () => {
    fc.assert(
      fc.property(dagArbitrary, ({ steps }) => {
        const { levels } = planWorkflow(steps);
        const wave = new Map(levels.flatMap((ids, i) => ids.map((id) => [id, i] as const)));

        for (const s of steps) {
          const expected = s.dependsOn.length === 0 ? 0 : Math.max(...s.dependsOn.map((d) => wave.get(d)!)) + 1;
          expect(wave.get(s.id)).toBe(expected);
        }
      }),
    );
  });
});

describe('Function: findCycle', () => {
  it('returns undefined for an acyclic workflow', () => {
    expect(findCycle([step('a'), step('b', 'a'), step('c', 'a', 'b')])).toBeUndefined();
  });

  it('names the cycle in dependsOn direction, starting at its earliest-declared step', () => {
    expect(findCycle([step('x'), step('c', 'b'), step('a', 'c'), step('b', 'a', 'x')])).toEqual(['c', 'b', 'a', 'c']);
  });

  it('reports a step that depends on itself', () => {
    expect(findCycle([step('a', 'a')])).toEqual(['a', 'a']);
  });

  it('ignores unknown dependencies', () => {
    expect(findCycle([step('a', 'ghost')])).toBeUndefined();
  });

  it('finds a cycle whenever a back edge is added to a random DAG', () => {
    fc.assert(
      fc.property(dagArbitrary, ({ steps }) => {
        expect(findCycle(steps)).toBeUndefined();
        const { order } = planWorkflow(steps);
        const deepest = steps.find((s) => s.id === order[order.length - 1])!;
        const withBackEdge = steps.map((s) => (s.id === order[0] ? step(s.id, ...s.dependsOn, deepest.id) : s));
        const cycle = findCycle(withBackEdge);

        expect(cycle !== undefined).toBe(reaches(steps, deepest.id, order[0]!));
        if (cycle) {
          expect(cycle![0]).toBe(cycle![cycle!.length - 1]);
          const byId = new Map(withBackEdge.map((s) => [s.id, s]));
          cycle!.slice(1).forEach((id, i) => expect(byId.get(cycle![i]!)!.dependsOn).toContain(id));
        }
      }),
    );
  });
});

function reaches(steps: readonly DagStep[], from: string, to: string): boolean {
  const byId = new Map(steps.map((s) => [s.id, s]));
  const seen = new Set<string>();
  const stack = [from];
  while (stack.length > 0) {
    const id = stack.pop()!;
    if (id === to) return true;
    if (seen.has(id)) continue;
    seen.add(id);
    stack.push(...(byId.get(id)?.dependsOn ?? []));
  }
  return false;
}
