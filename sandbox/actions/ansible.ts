import { ErrorName, StepError } from '../../core/errors.ts';
import { classifyPlaybookResult, parseReport, summarizeStats } from '../ansible/classify.ts';
import { runPlaybook } from '../ansible/runPlaybook.ts';
import { ansibleEnv, prepareWorkspace } from '../ansible/workspace.ts';
import { bastionForStep, pinnedVms } from '../ssh/forStep.ts';
import { handOver } from '../stepUser.ts';
import type { Action, ActionContext } from './types.ts';

export interface AnsibleActionOptions {
  /**
   * Prepended to the ansible-playbook command line, e.g. `['ip','netns','exec','ctd1a2b-host']`
   * to run inside the netns test bed's engine-side namespace. Empty in a real sandbox.
   */
  commandPrefix?: readonly string[];
}

/**
 * The `ansible` action: runs the step's playbook from the bundle against its target VMs,
 * through the bastion, with host keys pinned from the cloud driver. Exit 4 with unreachable
 * hosts is Ctd.AnsibleUnreachable (retried once by the state machine); any other failure is
 * Ctd.StepFailed naming the failed task and host.
 *
 * Login user: the topology's `bastion.user`, on the bastion and on the VMs alike (cloud images
 * ship one default user). Address, port and host key come from the driver; a host key pinned
 * in the topology wins over the driver's.
 */
export function createAnsibleAction(opts: AnsibleActionOptions = {}): Action {
  return async (ctx: ActionContext) => {
    const spec = ctx.step.spec;
    if (spec.action !== 'ansible') throw new StepError(ErrorName.StepFailed, `step ${ctx.step.stepId} is not an ansible step`);
    const { bastion: bastionSpec } = ctx.topology;
    const bastion = await bastionForStep(ctx);
    const targets = await pinnedVms(ctx, spec.targets);

    const ws = await prepareWorkspace({
      workDir: ctx.workDir,
      files: ctx.files,
      playbook: spec.playbook,
      privateKey: ctx.sshKey.privateKey,
      user: bastionSpec.user,
      bastion,
      targets,
      ...(spec.extraVars ? { extraVars: spec.extraVars } : {}),
    });
    // A playbook can run commands in the sandbox too (delegate_to: localhost): it runs as the step user.
    await handOver(ctx.workDir, ctx.stepUser);
    const args = ['-i', ws.inventory, ws.playbook, ...(ws.extraVarsFile ? ['-e', `@${ws.extraVarsFile}`] : [])];
    ctx.log.line('engine', `ansible-playbook ${spec.playbook} on ${spec.targets.join(', ')} via bastion ${bastion.address}`);
    const started = Date.now();
    const result = await runPlaybook({
      args,
      env: ansibleEnv(ws, ctx.workDir),
      cwd: ws.bundleDir,
      commandPrefix: opts.commandPrefix ?? [],
      log: ctx.log,
      signal: ctx.signal,
      ...(ctx.stepUser ? { user: ctx.stepUser } : {}),
    });
    ctx.log.line('engine', `ansible-playbook exited ${result.exitCode ?? 'on a signal'} after ${Date.now() - started} ms`);
    if (result.aborted) throw new StepError(ErrorName.StepFailed, 'the step was stopped while ansible-playbook ran');
    const error = classifyPlaybookResult(result.exitCode, result.stdout, result.stderr);
    if (error) throw error;
    return { playbook: spec.playbook, hosts: summarizeStats(parseReport(result.stdout)) };
  };
}

/** The action as the step runner uses it: ansible-playbook runs in the sandbox itself. */
export const ansible: Action = createAnsibleAction();
