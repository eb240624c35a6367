import { renderUserData } from '../../core/cloudInit.ts';
import { BOOTSTRAP_LIMIT_SECONDS, ErrorName, isStepError, StepError, VM_BOOTSTRAP_HINT } from '../../core/errors.ts';
import type { VmInfo } from '../../core/ports.ts';
import { sessionForStep } from '../ssh/forStep.ts';
import { targetVms } from '../ssh/targets.ts';
import type { Action, ActionContext } from './types.ts';

const HOST_KEY_POLL_MS = 2000;

/**
 * `provision`, in the order of docs/OPENSTACK.md: networks (subnet, router), security groups
 * (rules) and the engine's SSH group (port 22 from the bastion's group), then the VMs (port, server with cloud-init user data carrying the deployment's public
 * key, floating IP), each adopted when an earlier attempt made it. Ends with the bootstrap check:
 * every VM's host key must show on its console and the VM accept SSH through the bastion within
 * 180 s (scaled by timeScale), else Ctd.VmBootstrapTimeout. Networks and groups are created only
 * when provisioning the whole topology (no targets).
 */
export const provision: Action = async (ctx) => {
  const whole = !(ctx.step.spec as { targets?: string[] }).targets;
  const vms = targetVms(ctx);
  const { externalNetwork } = ctx.topology;
  const ext = externalNetwork === undefined ? {} : { externalNetwork };
  if (whole) {
    for (const [index, network] of ctx.topology.networks.entries()) {
      await ctx.cloud.ensureNetwork(ctx.cloudCtx, { network, index, ...ext });
      ctx.log.line('engine', `network ${network.name} ready`);
    }
    for (const group of ctx.topology.securityGroups) {
      await ctx.cloud.ensureSecurityGroup(ctx.cloudCtx, group);
      ctx.log.line('engine', `security group ${group.name} ready`);
    }
    await ctx.cloud.ensureSshAccess(ctx.cloudCtx, { bastionSecurityGroup: ctx.topology.bastion.securityGroup });
    ctx.log.line('engine', 'SSH from the bastion to the VMs allowed');
  }
  const settled = await Promise.allSettled(
    vms.map(async (vm) => {
      const info = await ctx.cloud.ensureVm(ctx.cloudCtx, { vm, userData: renderUserData(vm, ctx.sshKey.publicKey), ...ext });
      ctx.log.line('engine', `VM ${vm.name} active at ${info.address}${info.floatingIp ? ` (floating IP ${info.floatingIp})` : ''}`, vm.name);
      return info;
    }),
  );
  throwFirst(settled);
  const created = settled.map((s) => (s as PromiseFulfilledResult<VmInfo>).value);

  const session = await sessionForStep(ctx);
  const limitMs = BOOTSTRAP_LIMIT_SECONDS * 1000 * ctx.timeScale;
  const deadline = Date.now() + limitMs;
  try {
    const checks = await Promise.allSettled(
      created.map(async (vm) => {
        const hostKey = await hostKeyWithin(ctx, vm, deadline);
        await session.waitForSsh({ name: vm.name, address: vm.address, port: vm.port, hostKey }, Math.max(1, deadline - Date.now()), BOOTSTRAP_LIMIT_SECONDS);
        ctx.log.line('engine', `${vm.name} answers over SSH through the bastion`, vm.name);
      }),
    );
    throwFirst(checks);
  } finally {
    session.closeAll();
  }
  return { vms: created.map((v) => ({ name: v.name, address: v.address, ...(v.floatingIp ? { floatingIp: v.floatingIp } : {}) })) };
};

/** Cloud-init prints the host keys on the console once it has generated them: re-read until then. */
async function hostKeyWithin(ctx: ActionContext, vm: VmInfo, deadline: number): Promise<string> {
  let hostKey = vm.hostKey;
  while (!hostKey) {
    if (ctx.signal.aborted) throw new StepError(ErrorName.StepFailed, 'the step was stopped');
    if (Date.now() >= deadline) {
      throw new StepError(
        ErrorName.VmBootstrapTimeout,
        `${vm.name} did not show its SSH host keys on its console within ${BOOTSTRAP_LIMIT_SECONDS} s; ${VM_BOOTSTRAP_HINT}`,
      );
    }
    await new Promise((r) => setTimeout(r, Math.min(HOST_KEY_POLL_MS * ctx.timeScale, Math.max(0, deadline - Date.now()))));
    hostKey = (await ctx.cloud.describeVms(ctx.cloudCtx, [vm.name]))[0]?.hostKey;
  }
  return hostKey;
}

/** A bootstrap timeout outranks other failures (it must not be retried); then any StepError. */
function throwFirst(results: PromiseSettledResult<unknown>[]): void {
  const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
  const first =
    failures.find((f) => isStepError(f) && f.errorName === ErrorName.VmBootstrapTimeout) ?? failures.find((f) => isStepError(f)) ?? failures[0];
  if (first) throw first;
}
