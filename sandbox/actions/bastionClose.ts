import type { Action } from './types.ts';

/**
 * System step `bastion-close`: removes this deployment's key from the bastion, then its rules
 * (by recorded id, failing that by their description) unless another running deployment of the
 * engine still uses them (see CloudDriver.closeBastionRules). Already gone (or never opened) is
 * success, so Cleanup can always run it.
 */
export const bastionClose: Action = async (ctx) => {
  const { securityGroup, server } = ctx.topology.bastion;
  const recorded = await ctx.recordedResources();
  // Access first: the rules are shared with concurrent deployments, and only the last one out deletes them.
  await ctx.cloud.revokeBastionAccess(ctx.cloudCtx, { server });
  ctx.log.line('engine', `deployment key removed from bastion ${server}`);
  const { deleted, keptFor } = await ctx.cloud.closeBastionRules(ctx.cloudCtx, { securityGroup, server, recorded });
  if (deleted.length > 0) ctx.log.line('engine', `bastion rules deleted: ${deleted.join(', ')}`);
  else if (keptFor.length > 0) ctx.log.line('engine', `bastion rules kept open for ${keptFor.length} other running deployment(s): ${keptFor.join(', ')}`);
  else ctx.log.line('engine', 'no bastion rule left to delete');
  return { closed: deleted.length > 0, ruleIds: deleted };
};
