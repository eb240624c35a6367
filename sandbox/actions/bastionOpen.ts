import type { Action } from './types.ts';

/**
 * System step `bastion-open`: publishes the deployment's public key on the bastion server (a login
 * that may forward TCP; docs/OPENSTACK.md, "Bastion access"), then one ingress rule per egress
 * address of the engine on the bastion's security group, each recorded by the driver the moment
 * it exists so bastion-close always knows what to delete.
 */
export const bastionOpen: Action = async (ctx) => {
  const { securityGroup, server } = ctx.topology.bastion;
  const cidrs = await ctx.cloud.egressCidrs(ctx.cloudCtx);
  const port = ctx.topology.bastion.port ?? (await ctx.cloud.describeBastion(ctx.cloudCtx, { server, securityGroup })).port;
  // Access first: a deployment closing meanwhile then sees this one and leaves the shared rules open.
  await ctx.cloud.grantBastionAccess(ctx.cloudCtx, { server, publicKey: ctx.sshKey.publicKey });
  ctx.log.line('engine', `deployment key published on bastion ${server} (login with TCP forwarding)`);
  const ruleIds: string[] = [];
  for (const cidr of cidrs) {
    const { ruleId } = await ctx.cloud.openBastionRule(ctx.cloudCtx, { securityGroup, cidr, port });
    ruleIds.push(ruleId);
    ctx.log.line('engine', `bastion port ${port} open for ${cidr} (rule ${ruleId})`);
  }
  return { ruleIds, cidrs, port };
};
