import type { VmSpec } from '../../core/deployment/schema.ts';
import type { ActionContext } from '../actions/types.ts';

/** The topology VMs a step acts on: its `targets` when it has any, else all of them. */
export function targetVms(ctx: ActionContext): VmSpec[] {
  const spec = ctx.step.spec as { targets?: string[] };
  if (!spec.targets) return ctx.topology.vms;
  return spec.targets.map((name) => {
    const vm = ctx.topology.vms.find((v) => v.name === name);
    if (!vm) throw new Error(`step targets VM "${name}", which the topology does not declare`);
    return vm;
  });
}

/** Runs `task` over `items` with at most `limit` at once; resolves with every outcome. */
export async function settleBounded<T, R>(items: readonly T[], limit: number, task: (item: T) => Promise<R>): Promise<PromiseSettledResult<R>[]> {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { status: 'fulfilled', value: await task(items[i]!) };
      } catch (reason) {
        results[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
