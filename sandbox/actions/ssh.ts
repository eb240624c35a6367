import type { Bundle } from '../../core/deployment/bundle.ts';
import { ErrorName, StepError } from '../../core/errors.ts';
import { pinnedVms, sessionForStep } from '../ssh/forStep.ts';
import { settleBounded } from '../ssh/targets.ts';
import type { Action } from './types.ts';

const DEFAULT_CONCURRENCY = 8;

/** The bundle files a step pushes: its `files` list when given, else the whole bundle. */
function filesToPush(bundle: Bundle, wanted: string[] | undefined): Bundle {
  if (!wanted) return bundle;
  const picked: Bundle = {};
  for (const path of wanted) {
    const content = bundle[path];
    if (content === undefined) throw new StepError(ErrorName.StepFailed, `file "${path}" is not in the deployment bundle`);
    picked[path] = content;
  }
  return picked;
}

/**
 * `ssh`: on each target VM (at most `concurrency` at once) push the step's files into the home
 * over SFTP and run the command, streaming its output into the step log tagged with the host.
 * Any non-zero exit fails the step with Ctd.StepFailed naming every failing host and its code.
 */
export const ssh: Action = async (ctx) => {
  const spec = ctx.step.spec;
  if (spec.action !== 'ssh') throw new Error(`the ssh action cannot run a "${spec.action}" step`);
  const files = filesToPush(ctx.files, spec.files);
  const hosts = await pinnedVms(ctx, spec.targets);

  const session = await sessionForStep(ctx);
  try {
    const results = await settleBounded(hosts, spec.concurrency ?? DEFAULT_CONCURRENCY, async (vm) => {
      if (Object.keys(files).length > 0) {
        await session.push(vm, files);
        ctx.log.line('engine', `pushed ${Object.keys(files).length} file(s)`, vm.name);
      }
      return session.exec(vm, spec.command, (stream, text) => ctx.log.line(stream, text, vm.name));
    });
    if (ctx.signal.aborted) throw new StepError(ErrorName.StepFailed, 'the step was stopped');
    const problems = results.flatMap((r, i) => {
      const host = hosts[i]!.name;
      if (r.status === 'rejected') return [`${host}: ${r.reason instanceof Error ? r.reason.message : String(r.reason)}`];
      return r.value === 0 ? [] : [`command exited ${r.value} on ${host}`];
    });
    if (problems.length > 0) throw new StepError(ErrorName.StepFailed, problems.join('; '));
    return { hosts: hosts.map((h) => h.name) };
  } finally {
    session.closeAll();
  }
};
