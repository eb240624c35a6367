import { targetVms } from '../ssh/targets.ts';
import type { Action } from './types.ts';

/**
 * `deprovision`: with `targets`, deletes those VMs (floating IP, server, port) only. Without,
 * deletes everything the deployment recorded in reverse creation order, then sweeps the cloud
 * for whatever is still marked with the deployment (a record lost to a crash). What is already
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
  const deleted = await ctx.cloud.deleteResources(ctx.cloudCtx, recorded);
  for (const ref of deleted) ctx.log.line('engine', `${ref.kind} ${ref.name} deleted`);
  const swept = await ctx.cloud.sweep(ctx.cloudCtx);
  for (const ref of swept) ctx.log.line('engine', `${ref.kind} ${ref.name} (${ref.id}) found by its mark and deleted`);
  return { deleted: ctx.topology.vms.map((v) => v.name), resources: deleted.length + swept.length };
};
