import type { Action } from './types.ts';

/**
 * System step `bastion-open`: admits this engine's egress address to the bastion's SSH port and
 * turns TCP forwarding on. The rule id is recorded before anything else can fail, so
 * bastion-close always knows what to delete.
 */
export const bastionOpen: Action = async (ctx) => {
  const { securityGroup, port } = ctx.topology.bastion;
  const cidr = await ctx.cloud.egressCidr(ctx.cloudCtx);
  const { ruleId } = await ctx.cloud.addBastionRule(ctx.cloudCtx, { securityGroup, cidr, port, description: `ctd:${ctx.deployment.deploymentId}` });
  await ctx.recordDeployment({ bastionRuleId: ruleId });
  ctx.log.line('engine', `bastion access open for ${cidr} (rule ${ruleId})`);
  await ctx.cloud.setBastionForwarding(ctx.cloudCtx, { securityGroup, enabled: true });
  ctx.log.line('engine', 'TCP forwarding enabled on the bastion');
  return { ruleId };
};
