import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SandboxLauncher } from '../../core/ports.ts';

/**
 * Local stand-in for ECS Fargate: each RunTask starts the step runner as a child process with
 * a scrubbed environment and a fresh private working directory, inside bwrap namespaces when
 * bwrap is installed. StopTask, a stopped execution or engine shutdown kills the whole process
 * group; the work dir is removed when the process is gone. Nothing outlives its step.
 */

export interface LocalSandboxOptions {
  stateDir: string;
  /** Environment every runner gets: service endpoints, table, key, cloud. Ids and token are added per task. */
  baseEnv: Record<string, string>;
  /** Command prefix that places the sandbox in another network namespace (netns test bed). */
  commandPrefix?: () => string[];
  /** Called when a runner died without answering (crash, kill): the task fails as a lost sandbox. */
  onLost: (taskToken: string, cause: string) => Promise<void>;
  log: (line: string) => void;
  /** Use bwrap when available (default true). */
  isolate?: boolean;
  /** The runner's command line; default: node on the TypeScript entry through tsx. */
  runnerCommand?: string[];
}

interface RunningTask {
  stepId: string;
  child: ChildProcess;
  workDir: string;
  exited: Promise<void>;
}

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RUNNER = join(REPO_ROOT, 'sandbox', 'main.ts');

export class LocalSandboxes implements SandboxLauncher {
  private readonly tasks = new Map<string, RunningTask>();
  private readonly bwrap: string | undefined;

  constructor(private readonly opts: LocalSandboxOptions) {
    this.bwrap = opts.isolate === false ? undefined : findBwrap();
    opts.log(
      this.bwrap
        ? 'sandbox isolation: bwrap (own pid, mount, ipc and uts namespaces, capabilities dropped, read-only /, private /tmp, engine state hidden)'
        : 'sandbox isolation: separate process group with a scrubbed environment (install bubblewrap for namespaces)',
    );
  }

  /** ecs:runTask(.waitForTaskToken) with the state's resolved Parameters; returns ECS's RunTask response shape. */
  async runTask(parameters: unknown, signal: AbortSignal): Promise<{ tasks: { taskArn: string; lastStatus: string }[]; failures: [] }> {
    const env = containerEnvironment(parameters);
    const taskId = randomUUID().replaceAll('-', '');
    const taskArn = `arn:aws:ecs:local:000000000000:task/ctd-local/${taskId}`;
    const workDir = join(this.opts.stateDir, 'sandboxes', taskId);
    await mkdir(workDir, { recursive: true, mode: 0o700 });

    const childEnv: Record<string, string> = { ...this.opts.baseEnv, ...env, CTD_TASK_ARN: taskArn, CTD_WORK_DIR: workDir, HOME: workDir };
    const [command, ...args] = [...(this.opts.commandPrefix?.() ?? []), ...this.isolation(workDir, childEnv), ...(this.opts.runnerCommand ?? [process.execPath, '--import', 'tsx', RUNNER])];
    const child = spawn(command!, args, {
      cwd: workDir,
      // bwrap gets --clearenv; without it, this object is the whole environment.
      env: this.bwrap ? { PATH: process.env.PATH ?? '/usr/bin:/bin' } : childEnv,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout?.on('data', (c: Buffer) => this.opts.log(`[${env.CTD_STEP_ID ?? '?'}] ${c.toString().trimEnd()}`));
    child.stderr?.on('data', (c: Buffer) => this.opts.log(`[${env.CTD_STEP_ID ?? '?'}] ${c.toString().trimEnd()}`));
    const exited = new Promise<void>((resolve) => {
      child.once('close', (code, sig) => {
        this.tasks.delete(taskArn);
        void rm(workDir, { recursive: true, force: true }).finally(resolve);
        if (code !== 0 && env.CTD_TASK_TOKEN) {
          // Exit 1 means the runner answered a failure itself; anything else is a lost sandbox.
          if (code !== 1) {
            this.opts
              .onLost(env.CTD_TASK_TOKEN, `the sandbox exited unexpectedly (${sig ?? `exit code ${code}`})`)
              .catch((e: unknown) => this.opts.log(`could not report the lost sandbox of ${env.CTD_STEP_ID ?? '?'}: ${String(e)}`));
          }
        }
      });
    });
    this.tasks.set(taskArn, { stepId: env.CTD_STEP_ID ?? '?', child, workDir, exited });
    signal.addEventListener('abort', () => void this.stopTask(taskArn, 'execution stopped'), { once: true });
    return { tasks: [{ taskArn, lastStatus: 'PROVISIONING' }], failures: [] };
  }

  /** Kills the task's process group: SIGTERM lets the runner close its connections, SIGKILL follows. */
  async stopTask(taskArn: string, reason: string): Promise<void> {
    const task = this.tasks.get(taskArn);
    if (!task?.child.pid) return;
    this.opts.log(`stopping ${taskArn.split('/').pop()}: ${reason}`);
    const pgid = task.child.pid;
    signalGroup(pgid, 'SIGTERM');
    const killer = setTimeout(() => signalGroup(pgid, 'SIGKILL'), 3000);
    await task.exited;
    clearTimeout(killer);
    // Whatever the runner started in its group goes too.
    signalGroup(pgid, 'SIGKILL');
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.tasks.keys()].map((arn) => this.stopTask(arn, 'engine stopping')));
  }

  /** Process group ids of the running sandboxes, by step id — for tests and `ctd local up` diagnostics. */
  processGroups(): Map<string, number> {
    const groups = new Map<string, number>();
    for (const task of this.tasks.values()) if (task.child.pid) groups.set(task.stepId, task.child.pid);
    return groups;
  }

  /** bwrap arguments: a new view of the machine in which the engine's own state is invisible. */
  private isolation(workDir: string, env: Record<string, string>): string[] {
    if (!this.bwrap) return [];
    const setenv = Object.entries(env).flatMap(([k, v]) => ['--setenv', k, v]);
    return [
      this.bwrap,
      '--die-with-parent',
      '--unshare-user-try',
      '--unshare-pid',
      '--unshare-ipc',
      '--unshare-uts',
      '--unshare-cgroup-try',
      '--cap-drop',
      'ALL',
      '--ro-bind',
      '/',
      '/',
      '--dev',
      '/dev',
      '--proc',
      '/proc',
      '--tmpfs',
      '/tmp',
      '--tmpfs',
      this.opts.stateDir,
      '--bind',
      workDir,
      workDir,
      '--chdir',
      workDir,
      '--clearenv',
      ...setenv,
      '--',
    ];
  }
}

function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // already gone
  }
}

function findBwrap(): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v bwrap'], { encoding: 'utf8' });
  const path = found.stdout.trim();
  if (!path) return undefined;
  // bwrap can be installed yet unusable (no user namespaces): try it once.
  const probe = spawnSync(path, ['--ro-bind', '/', '/', '--unshare-pid', '--', '/bin/true']);
  return probe.status === 0 ? path : undefined;
}

/** Overrides.ContainerOverrides[].Environment of RunTask → a plain map. */
function containerEnvironment(parameters: unknown): Record<string, string> {
  const overrides = (parameters as { Overrides?: { ContainerOverrides?: { Environment?: { Name: string; Value: string }[] }[] } })?.Overrides;
  const env: Record<string, string> = {};
  for (const container of overrides?.ContainerOverrides ?? []) {
    for (const { Name, Value } of container.Environment ?? []) env[Name] = String(Value);
  }
  return env;
}
