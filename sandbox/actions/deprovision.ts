import { targetVms } from '../ssh/targets.ts';
import type { Action } from './types.ts';

/**
 * `deprovision`: deletes VMs, then security groups and networks (those only when the step
 * covers the whole topology). What is already gone counts as deleted (the driver treats 404
 * as success), so a retried or repeated deprovision succeeds.
 */
export const deprovision: Action = async (ctx) => {
  const whole = !(ctx.step.spec as { targets?: string[] }).targets;
  const vms = targetVms(ctx);
  await Promise.all(
    vms.map(async (vm) => {
      await ctx.cloud.deleteVm(ctx.cloudCtx, vm.name);
      ctx.log.line('engine', `VM ${vm.name} deleted`, vm.name);
    }),
  );
  if (whole) {
    for (const group of ctx.topology.securityGroups) {
      await ctx.cloud.deleteSecurityGroup(ctx.cloudCtx, group.name);
      ctx.log.line('engine', `security group ${group.name} deleted`);
    }
    for (const network of ctx.topology.networks) {
      await ctx.cloud.deleteNetwork(ctx.cloudCtx, network.name);
      ctx.log.line('engine', `network ${network.name} deleted`);
    }
  }
  return { deleted: vms.map((v) => v.name) };
};
