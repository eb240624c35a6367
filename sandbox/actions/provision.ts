import { renderUserData } from '../../core/cloudInit.ts';
import { BOOTSTRAP_LIMIT_SECONDS, isStepError } from '../../core/errors.ts';
import type { VmInfo } from '../../core/ports.ts';
import { sessionForStep } from '../ssh/forStep.ts';
import { targetVms } from '../ssh/targets.ts';
import type { Action } from './types.ts';

/**
 * `provision`: networks, then security groups, then VMs with cloud-init user data carrying the
 * deployment's public key; ends with the bootstrap check — every created VM must accept SSH
 * through the bastion within 180 s (scaled by timeScale), else Ctd.VmBootstrapTimeout.
 * Networks and groups are created only when provisioning the whole topology (no targets).
 */
export const provision: Action = async (ctx) => {
  const whole = !(ctx.step.spec as { targets?: string[] }).targets;
  const vms = targetVms(ctx);
  if (whole) {
    for (const network of ctx.topology.networks) {
      await ctx.cloud.createNetwork(ctx.cloudCtx, network);
      ctx.log.line('engine', `network ${network.name} created`);
    }
    for (const group of ctx.topology.securityGroups) {
      await ctx.cloud.createSecurityGroup(ctx.cloudCtx, group);
      ctx.log.line('engine', `security group ${group.name} created`);
    }
  }
  const created: VmInfo[] = [];
  // A retried attempt (e.g. after Ctd.BackendUnreachable) keeps the VMs an earlier attempt created.
  const existing = await ctx.cloud.describeVms(ctx.cloudCtx);
  for (const vm of vms) {
    const found = existing.find((v) => v.name === vm.name);
    if (found) {
      created.push(found);
      ctx.log.line('engine', `VM ${vm.name} already exists at ${found.address} (${found.status})`, vm.name);
      continue;
    }
    const info = await ctx.cloud.createVm(ctx.cloudCtx, vm, renderUserData(vm, ctx.sshKey.publicKey));
    created.push(info);
    ctx.log.line('engine', `VM ${vm.name} created at ${info.address} (${info.status})`, vm.name);
  }

  const session = await sessionForStep(ctx);
  const limitMs = BOOTSTRAP_LIMIT_SECONDS * 1000 * ctx.timeScale;
  try {
    const checks = await Promise.allSettled(
      created.map(async (vm) => {
        await session.waitForSsh(vm, limitMs, BOOTSTRAP_LIMIT_SECONDS);
        ctx.log.line('engine', `${vm.name} answers over SSH through the bastion`, vm.name);
      }),
    );
    const failures = checks.flatMap((c) => (c.status === 'rejected' ? [c.reason as unknown] : []));
    // A bootstrap timeout outranks other failures: it is the one that must not be retried.
    const first = failures.find((f) => isStepError(f)) ?? failures[0];
    if (first) throw first;
  } finally {
    session.closeAll();
  }
  return { vms: created.map((v) => ({ name: v.name, address: v.address })) };
};
