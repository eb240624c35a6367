import type { Action } from './types.ts';

/**
 * System step `bastion-close`: deletes exactly the rule bastion-open recorded — never rules of
 * other deployments. Already gone (or never opened) is success, so Cleanup can always run it.
 * Forwarding stays as is: other deployments may be using the bastion.
 */
export const bastionClose: Action = async (ctx) => {
  const ruleId = ctx.deployment.bastionRuleId;
  if (!ruleId) {
    ctx.log.line('engine', 'no bastion rule recorded; nothing to close');
    return { closed: false };
  }
  await ctx.cloud.deleteBastionRule(ctx.cloudCtx, { securityGroup: ctx.topology.bastion.securityGroup, ruleId });
  ctx.log.line('engine', `bastion rule ${ruleId} deleted`);
  return { closed: true, ruleId };
};
