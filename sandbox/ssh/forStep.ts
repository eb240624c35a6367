import { ErrorName, StepError } from '../../core/errors.ts';
import type { ActionContext } from '../actions/types.ts';
import { SshSession, type SshHost } from './session.ts';

/**
 * The bastion as a step connects to it: address and port from the cloud (its floating IP, its
 * metadata "ssh_port" unless the topology sets one), host key pinned in the topology when
 * given, otherwise the one the cloud shows on the server's console.
 */
export async function bastionForStep(ctx: ActionContext): Promise<SshHost> {
  const b = ctx.topology.bastion;
  const info = await ctx.cloud.describeBastion(ctx.cloudCtx, { server: b.server, securityGroup: b.securityGroup, ...(b.port ? { port: b.port } : {}) });
  const hostKey = b.hostKey ?? info.hostKey;
  if (!hostKey) {
    throw new StepError(
      ErrorName.StepFailed,
      `the host key of the bastion "${b.server}" is not on its console; pin it as bastion.hostKey in the deployment`,
    );
  }
  return { name: 'bastion', address: info.address, port: info.port, hostKey };
}

/** An SSH session for a step: through the bastion, logged in as the bastion's user on VMs too. */
export async function sessionForStep(ctx: ActionContext, opts: { retryIntervalMs?: number } = {}): Promise<SshSession> {
  const bastion = await bastionForStep(ctx);
  return new SshSession({
    bastion: { ...bastion, user: ctx.topology.bastion.user },
    user: ctx.topology.bastion.user,
    privateKey: ctx.sshKey.privateKey,
    signal: ctx.signal,
    ...opts,
  });
}

/** The named VMs with the address and host key the cloud reports; one that is missing or keyless fails the step. */
export async function pinnedVms(ctx: ActionContext, names: readonly string[]): Promise<SshHost[]> {
  const known = await ctx.cloud.describeVms(ctx.cloudCtx, names);
  return names.map((name) => {
    const vm = known.find((v) => v.name === name);
    if (!vm) throw new StepError(ErrorName.StepFailed, `VM ${name} does not exist (was it provisioned?)`);
    if (!vm.hostKey) throw new StepError(ErrorName.StepFailed, `the host key of VM ${name} is not on its console yet (did provision succeed?)`);
    return { name, address: vm.address, port: vm.port, hostKey: vm.hostKey };
  });
}
