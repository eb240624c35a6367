import { spawn } from 'node:child_process';
import { ErrorName, StepError } from '../../core/errors.ts';
import { writeBundle } from '../bundle.ts';
import { LineSplitter } from '../lines.ts';
import { handOver, spawnIdentity } from '../stepUser.ts';
import type { Action } from './types.ts';

/**
 * `run`: a command inside the sandbox itself, with the user's token in its environment
 * (the generic form of "run Terraform with the user's credentials") and the bundle's files
 * in its working directory. It sees nothing else of the runner's environment, and runs as the
 * step user when there is one.
 */
export const run: Action = async (ctx) => {
  const spec = ctx.step.spec;
  if (spec.action !== 'run') throw new StepError(ErrorName.StepFailed, `step ${ctx.step.stepId} is not a run step`);
  await writeBundle(ctx.workDir, ctx.files);
  await handOver(ctx.workDir, ctx.stepUser);
  const env: NodeJS.ProcessEnv = {
    PATH: '/usr/local/bin:/usr/bin:/bin',
    HOME: ctx.workDir,
    LANG: 'C.UTF-8',
    ...spec.env,
    CTD_DEPLOYMENT_ID: ctx.deployment.deploymentId,
    CTD_STEP_ID: ctx.step.stepId,
    CTD_TOKEN: ctx.token,
    OS_AUTH_TOKEN: ctx.token,
  };
  const code = await new Promise<number>((resolve, reject) => {
    // Its own process group, so a stop kills the command and everything it started.
    const child = spawn('/bin/sh', ['-c', spec.command], {
      cwd: ctx.workDir,
      env,
      ...spawnIdentity(ctx.stepUser),
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const out = new LineSplitter((l) => ctx.log.line('stdout', l));
    const err = new LineSplitter((l) => ctx.log.line('stderr', l));
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const kill = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        // The group is empty already (what is left of the command left it with setsid).
      }
    };
    ctx.signal.addEventListener('abort', kill, { once: true });
    if (ctx.signal.aborted) kill();
    child.on('error', reject);
    child.on('close', (exitCode, signal) => {
      ctx.signal.removeEventListener('abort', kill);
      out.flush();
      err.flush();
      resolve(exitCode ?? (signal ? 128 : 1));
    });
  });
  if (ctx.signal.aborted) throw new StepError(ErrorName.StepFailed, 'the step was stopped');
  if (code !== 0) throw new StepError(ErrorName.StepFailed, `command exited ${code}`);
  return { exitCode: 0 };
};
