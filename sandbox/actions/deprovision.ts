import { targetVms } from '../ssh/targets.ts';
import type { Action } from './types.ts';

/**
 * `deprovision`: with `targets`, deletes those VMs (floating IP, server, port) only. Without,
 * deletes everything the deployment recorded together with whatever the cloud still shows
 * marked with the deployment (a record lost to a crash), in reverse creation order. What is already
 * gone counts as deleted, so a retried or repeated deprovision succeeds.
 */
export const deprovision: Action = async (ctx) => {
  const targets = (ctx.step.spec as { targets?: string[] }).targets;
  const recorded = await ctx.recordedResources();
  if (targets) {
    const vms = targetVms(ctx);
    for (const vm of vms) {
      await ctx.cloud.deleteVm(ctx.cloudCtx, vm.name, recorded);
      ctx.log.line('engine', `VM ${vm.name} deleted`, vm.name);
    }
    return { deleted: vms.map((v) => v.name) };
  }
  // One pass over the record and the marks together, so a lost port cannot block its group's deletion.
  const deleted = await ctx.cloud.sweep(ctx.cloudCtx, recorded);
  const known = new Set(recorded.map((r) => `${r.kind}#${r.id}`));
  for (const ref of deleted) {
    const how = known.has(`${ref.kind}#${ref.id}`) ? '' : ' (found by its mark: its record was lost)';
    ctx.log.line('engine', `${ref.kind} ${ref.name} deleted${how}`);
  }
  return { deleted: ctx.topology.vms.map((v) => v.name), resources: deleted.length };
};
