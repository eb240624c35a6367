import type { Action } from './types.ts';

/**
 * System step `bastion-close`: deletes exactly this deployment's bastion rules (by recorded id,
 * failing that by their description) and its key on the bastion — never anything of other
 * deployments. Already gone (or never opened) is success, so Cleanup can always run it.
 */
export const bastionClose: Action = async (ctx) => {
  const { securityGroup, server } = ctx.topology.bastion;
  const recorded = await ctx.recordedResources();
  const { deleted } = await ctx.cloud.closeBastionRules(ctx.cloudCtx, { securityGroup, recorded });
  ctx.log.line('engine', deleted.length > 0 ? `bastion rules deleted: ${deleted.join(', ')}` : 'no bastion rule left to delete');
  await ctx.cloud.revokeBastionAccess(ctx.cloudCtx, { server });
  ctx.log.line('engine', `deployment key removed from bastion ${server}`);
  return { closed: deleted.length > 0, ruleIds: deleted };
};
