import type { ActionContext } from '../actions/types.ts';
import { SshSession } from './session.ts';

/**
 * An SSH session for a step: the bastion's host key is the one pinned in the topology when
 * given, otherwise the one the cloud reports; the login is the bastion's user on VMs too.
 */
export async function sessionForStep(ctx: ActionContext, opts: { retryIntervalMs?: number } = {}): Promise<SshSession> {
  const b = ctx.topology.bastion;
  const hostKey = b.hostKey ?? (await ctx.cloud.describeBastion(ctx.cloudCtx, b.securityGroup)).hostKey;
  return new SshSession({
    bastion: { name: 'bastion', address: b.address, port: b.port, user: b.user, hostKey },
    user: b.user,
    privateKey: ctx.sshKey.privateKey,
    signal: ctx.signal,
    ...opts,
  });
}
