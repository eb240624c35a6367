import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, readdir, rm } from 'node:fs/promises';
import { availableParallelism, constants } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ECS_TASK_STATE_CHANGE, type EcsTaskStateChangeEvent } from '../../adapters/aws/ecsTaskEvents.ts';
import { RUNNER_CONTAINER_NAME, RUNNER_READY, RUNNER_WAKE, TASK_ENV } from '../../core/config/names.ts';
import type { SandboxLauncher } from '../../core/ports.ts';
import { SYSTEM_STEP_IDS } from '../../core/deployment/constants.ts';
import { SandboxSpawner, SpawnerGoneError, signalGroup, type RunnerEvents, type RunnerHandle, type SpawnRequest } from './spawnerClient.ts';

/**
 * Local stand-in for ECS Fargate: each RunTask starts the step runner as a child process with
 * a scrubbed environment and a fresh private working directory, inside bwrap namespaces when
 * bwrap is installed. StopTask, a stopped execution or engine shutdown kills the whole process
 * group; the work dir is removed when the process is gone. Nothing outlives its step. Like ECS,
 * every task that stops emits an "ECS Task State Change" event (STOPPED, stopCode, stoppedReason,
 * the container's exit code, the overrides), which the engine routes to the same handler as AWS.
 * Runners are forked by a small spawner process (spawnerClient.ts), not by the engine itself.
 */

export interface LocalSandboxOptions {
  stateDir: string;
  /** Environment every runner gets: service endpoints, table, key, cloud. Ids and token are added per task. */
  baseEnv: Record<string, string>;
  /** Command prefix that places the sandbox in another network namespace (netns test bed). */
  commandPrefix?: () => string[];
  /** Receives the STOPPED event of every task, as EventBridge would deliver it to the engine's rule target. */
  onTaskStopped: (event: EcsTaskStateChangeEvent) => Promise<unknown>;
  /** RunTask → the runner receives its task: Fargate takes 30–60 s here (docs/DEPLOY-AWS.md); default 0. */
  startLatencyMs?: number;
  /** The same as a distribution (ms), one draw per RunTask; wins over startLatencyMs. */
  startLatency?: StartLatency;
  /**
   * The account's Fargate vCPU quota, in tasks (each sandbox 1 vCPU): a RunTask while this many tasks live is
   * refused as ECS refuses it (no task, one failure). Default: none.
   */
  taskQuota?: number;
  /** How long an ended task still counts against `taskQuota` (ms): a Fargate task holds its vCPU until it has stopped. Default 0. */
  taskQuotaReleaseMs?: number;
  log: (line: string) => void;
  /** Use bwrap when available (default true). */
  isolate?: boolean;
  /** The runner's command line; default: node on the TypeScript entry through tsx. */
  runnerCommand?: string[];
  /** How many runners to keep started ahead of need (default 2; 0 starts each on demand). */
  warm?: number;
  /** How many runners may load their modules at once (default: the core count); the rest queue. */
  maxBooting?: number;
}

/**
 * Who gets the next runner that is ready: bastion-open/close (every step waits on them), then steps
 * already released, then pre-started ones (their sandboxes only wait for a release); RunTask order within each.
 */
export const BOOT_RANK = { system: 0, released: 1, prestarted: 2 } as const;
type BootRank = (typeof BOOT_RANK)[keyof typeof BOOT_RANK];

/** A RunTask waiting for a runner to be ready. */
interface Waiter {
  rank: BootRank;
  resolve: (sandbox: Sandbox) => void;
  reject: (e: Error) => void;
}

/** One runner process: spawned warm (modules loaded, waiting for its task on stdin), then given exactly one task. */
interface Sandbox {
  id: string;
  /** The runner's process (its pid leads its process group), started by the spawner. */
  runner: RunnerHandle;
  /** The file spawned: bwrap, the command prefix's first word, or the runner itself. */
  command: string;
  workDir: string;
  exited: Promise<void>;
  /** The task's container environment, once assigned. */
  task?: Record<string, string>;
  /** The RunTask parameters' cluster and the StopTask reason, for the STOPPED event. */
  clusterArn?: string;
  stopReason?: string;
  /** Pending hand-over of the task while the "task" is still provisioning. */
  starting?: NodeJS.Timeout;
  /** Modules loaded, clients built: it said RUNNER_READY (or its boot slot timed out). */
  ready: boolean;
}

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const RUNNER = join(REPO_ROOT, 'sandbox', 'main.ts');
const BOOT_SLOT_MAX_MS = 10_000;
/** A sandbox's runner until the spawner answers (pid 0: nothing to signal, nothing to write to). */
const NOT_STARTED: RunnerHandle = { pid: 0, write: () => undefined };
/** ECS's words when the account's Fargate vCPU quota is reached (AWS re:Post, "unable to place a task"). */
export const VCPU_QUOTA_REACHED = "You've reached the limit on the number of vCPUs you can run concurrently";
const taskArnOf = (id: string) => `arn:aws:ecs:local:000000000000:task/ctd-local/${id}`;

/**
 * Removes every sandbox work dir a previous engine left: after a crash they may hold a step's
 * private key (the ansible workspace) or a warm runner's files. Only one engine owns a state dir
 * (see claimStateDir), so at start none of them can belong to a live sandbox.
 */
export async function removeLeftoverSandboxes(stateDir: string): Promise<string[]> {
  const root = join(stateDir, 'sandboxes');
  const left = await readdir(root).catch(() => [] as string[]);
  await rm(root, { recursive: true, force: true });
  return left;
}

export class LocalSandboxes implements SandboxLauncher {
  /** Assigned sandboxes by task ARN. */
  private readonly tasks = new Map<string, Sandbox>();
  /**
   * Runners spawned and not yet given a task, booting or ready, in spawn order. Each goes to a task only once
   * ready, to the first waiter by rank: a task is not bound to a runner still booting that a later, more urgent task needs.
   */
  private readonly idle: Sandbox[] = [];
  /** Spawns still waiting for their boot slot (or work dir). */
  private readonly spawning = new Set<Promise<Sandbox | undefined>>();
  /** Spawns that will bring a runner: started, not yet arrived, and not dropped as no longer wanted (see spawn). */
  private coming = 0;
  /** RunTasks waiting for a ready runner, ordered by rank, then arrival. */
  private readonly waiting: Waiter[] = [];
  private readonly bwrap: string | undefined;
  private stopping = false;
  /** The process that forks the runners; replaced when it dies (its runners' tasks end as lost sandboxes). */
  private spawner: SandboxSpawner | undefined;
  /** Steps whose tasks fail to start (fault injection: a CannotPullContainerError, say), with ECS's reason. */
  private readonly startFailures = new Map<string, string>();
  /** Steps whose RunTasks ECS refuses (fault injection: no Fargate capacity, say), with the failure's reason. */
  private readonly runTaskRefusals = new Map<string, string>();
  /** RunTasks accepted and still waiting for a runner: tasks under the quota already (taskQuota). */
  private placing = 0;
  /** Ended tasks that still count against the quota (taskQuotaReleaseMs). */
  private releasing = 0;
  /** Every RunTask, in order: the step, when, whether ahead of its release, and ECS's refusal if any. */
  readonly runTasks: { stepId: string; at: number; prestart: boolean; refused?: string }[] = [];

  constructor(private readonly opts: LocalSandboxOptions) {
    this.bwrap = opts.isolate === false ? undefined : findBwrap();
    opts.log(
      this.bwrap
        ? 'sandbox isolation: bwrap (own pid, mount, ipc and uts namespaces, capabilities dropped, read-only /, private /tmp, engine state hidden)'
        : 'sandbox isolation: separate process group with a scrubbed environment (install bubblewrap for namespaces)',
    );
    this.refill();
  }

  /**
   * ecs:runTask(.waitForTaskToken) with the state's resolved Parameters; returns ECS's RunTask
   * response shape. The task's ids and token reach the process over its stdin, never its command line.
   */
  async runTask(parameters: unknown, signal: AbortSignal): Promise<{ tasks: { taskArn: string; lastStatus: string }[]; failures: { arn?: string; reason: string }[] }> {
    const env = containerEnvironment(parameters);
    const clusterArn = String((parameters as { Cluster?: unknown })?.Cluster ?? '');
    const stepId = env[TASK_ENV.stepId] ?? '';
    const refused = this.runTaskRefusals.get(stepId) ?? (this.tasks.size + this.placing + this.releasing >= (this.opts.taskQuota ?? Infinity) ? VCPU_QUOTA_REACHED : undefined);
    this.runTasks.push({ stepId, at: Date.now(), prestart: bootRankOf(env) === BOOT_RANK.prestarted, ...(refused !== undefined ? { refused } : {}) });
    // As RunTask answers when Fargate cannot place the task: no task, one failure (Step Functions fails the state).
    if (refused !== undefined) return { tasks: [], failures: [{ reason: refused }] };
    const latency = this.opts.startLatency ? sampleLatency(this.opts.startLatency) : (this.opts.startLatencyMs ?? 0);
    const startFailure = this.startFailures.get(env[TASK_ENV.stepId] ?? '');
    if (startFailure !== undefined) {
      // No runner at all: the task stops while provisioning, as one whose image cannot be pulled.
      const taskArn = taskArnOf(randomUUID().replaceAll('-', ''));
      setTimeout(() => this.emitStopped({ taskArn, clusterArn, env, stopCode: 'TaskFailedToStart', stoppedReason: startFailure }), latency);
      return { tasks: [{ taskArn, lastStatus: 'PROVISIONING' }], failures: [] };
    }
    // Fargate's start runs from RunTask; the local runner's own boot counts towards it.
    const due = Date.now() + latency;
    // A task counts against the quota from its RunTask, while it waits for a runner too.
    this.placing++;
    let sandbox: Sandbox;
    try {
      sandbox = await this.acquire(bootRankOf(env), signal);
    } finally {
      // In the same tick as the task joins `tasks` below: no RunTask counts it twice or not at all.
      this.placing--;
    }
    const taskArn = taskArnOf(sandbox.id);
    sandbox.task = { ...env, [TASK_ENV.taskArn]: taskArn };
    sandbox.clusterArn = clusterArn;
    this.tasks.set(taskArn, sandbox);
    const handOver = () => {
      sandbox.starting = undefined;
      // Stdin stays open after the task: every further line is a wake (see wake).
      this.writeLine(sandbox, JSON.stringify(sandbox.task));
    };
    const wait = due - Date.now();
    if (wait > 0) sandbox.starting = setTimeout(handOver, wait);
    else handOver();
    // Also when the execution stopped between the runner's hand-over and here: an aborted signal fires no more events.
    if (signal.aborted) void this.stopTask(taskArn, 'execution stopped');
    else signal.addEventListener('abort', () => void this.stopTask(taskArn, 'execution stopped'), { once: true });
    return { tasks: [{ taskArn, lastStatus: 'PROVISIONING' }], failures: [] };
  }

  /** An ended task keeps its place under the quota a while, as a stopping Fargate task keeps its vCPU. */
  private holdQuota(): void {
    const ms = this.opts.taskQuota === undefined ? 0 : (this.opts.taskQuotaReleaseMs ?? 0);
    if (ms <= 0) return;
    this.releasing++;
    setTimeout(() => this.releasing--, ms).unref();
  }

  /** Every task of this step fails to start with ECS's `stoppedReason` until cleared (undefined). */
  failStarts(stepId: string, stoppedReason: string | undefined): void {
    if (stoppedReason === undefined) this.startFailures.delete(stepId);
    else this.startFailures.set(stepId, stoppedReason);
  }

  /** Every RunTask of this step is refused with ECS's `reason` (e.g. "Capacity is unavailable at this time") until cleared (undefined). */
  refuseRunTasks(stepId: string, reason: string | undefined): void {
    if (reason === undefined) this.runTaskRefusals.delete(stepId);
    else this.runTaskRefusals.set(stepId, reason);
  }

  /** Task ARNs of the running sandboxes, by step id. */
  taskArns(): Map<string, string> {
    return new Map([...this.tasks].map(([arn, s]) => [s.task?.[TASK_ENV.stepId] ?? '?', arn]));
  }

  /**
   * A released step's sandbox reads its step now instead of at its next poll: one line on its stdin,
   * carrying nothing. An ended or unknown task, or one not handed its task yet, is left alone.
   */
  wake(taskArn: string): void {
    const sandbox = this.tasks.get(taskArn);
    if (sandbox && !sandbox.starting) this.writeLine(sandbox, RUNNER_WAKE);
  }

  /** One line to the runner's stdin, through the spawner; a runner gone meanwhile is ignored. */
  private writeLine(sandbox: Sandbox, line: string): void {
    sandbox.runner.write(line);
  }

  /** Kills the task's process group: SIGTERM lets the runner close its connections, SIGKILL follows. */
  async stopTask(taskArn: string, reason: string): Promise<void> {
    const sandbox = this.tasks.get(taskArn);
    if (!sandbox) return;
    this.opts.log(`stopping ${sandbox.id}: ${reason}`);
    sandbox.stopReason ??= reason;
    await this.kill(sandbox);
  }

  async stopAll(): Promise<void> {
    this.stopping = true;
    for (const w of this.waiting.splice(0)) w.reject(new Error('the engine is stopping'));
    await Promise.all([...this.idle.splice(0).map((s) => this.kill(s)), ...[...this.tasks.keys()].map((arn) => this.stopTask(arn, 'engine stopping'))]);
    // Spawns that got their boot slot meanwhile: killed as they come (see refill).
    await Promise.allSettled([...this.spawning]);
    await this.spawner?.close();
  }

  /** Process group ids of the running sandboxes, by step id — for tests and `ctd local up` diagnostics. */
  processGroups(): Map<string, number> {
    const groups = new Map<string, number>();
    for (const s of this.tasks.values()) groups.set(s.task?.CTD_STEP_ID ?? '?', s.runner.pid);
    return groups;
  }

  /** The pid of the process that forks the runners (their parent), if it runs. */
  get spawnerPid(): number | undefined {
    return this.spawner?.usable ? this.spawner.pid : undefined;
  }

  /** Whether sandboxes run in bwrap namespaces (with the engine's state hidden). */
  get isolated(): boolean {
    return this.bwrap !== undefined;
  }

  /** Runners started ahead and not yet given a task (each has an empty work dir). */
  get warmCount(): number {
    return this.idle.length;
  }

  /** A ready runner for this task, at once if one is idle, else the first to be ready once every waiter of a better rank has one. */
  private acquire(rank: BootRank, signal: AbortSignal): Promise<Sandbox> {
    const ready = this.idle.findIndex((s) => s.ready);
    if (ready >= 0 && this.waiting.length === 0) {
      const [sandbox] = this.idle.splice(ready, 1);
      this.refill();
      return Promise.resolve(sandbox!);
    }
    return new Promise<Sandbox>((resolve, reject) => {
      const waiter: Waiter = {
        rank,
        resolve: (s) => {
          signal.removeEventListener('abort', onAbort);
          resolve(s);
        },
        reject,
      };
      const onAbort = () => {
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        reject(new Error('execution stopped before its sandbox started'));
        this.trim();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      const after = this.waiting.findIndex((w) => w.rank > rank);
      this.waiting.splice(after < 0 ? this.waiting.length : after, 0, waiter);
      this.refill(rank === BOOT_RANK.system);
    });
  }

  /** Gives ready runners to the waiting tasks, best rank first. */
  private dispatch(): void {
    while (this.waiting.length > 0) {
      const ready = this.idle.findIndex((s) => s.ready);
      if (ready < 0) break;
      const [sandbox] = this.idle.splice(ready, 1);
      this.waiting.shift()!.resolve(sandbox!);
    }
    this.refill();
    this.trim();
  }

  /** Runners wanted now: one per waiting task, plus `warm` started ahead of need. */
  private get wanted(): number {
    return this.waiting.length + (this.opts.warm ?? 2);
  }

  /**
   * Stops runners beyond those wanted: the tasks they were started for went away while they booted (a
   * stopped execution, a failed Parallel branch). Without this the pool only grew, and they idled until
   * the engine stopped. Spawns still queued for a boot slot go first (they drop out when their slot comes,
   * having done nothing yet); then the least advanced runner: one still booting, else the newest.
   */
  private trim(): void {
    while (this.idle.length > 0 && this.idle.length + this.coming - this.bootQueue.length > this.wanted) {
      const booting = this.idle.findLastIndex((s) => !s.ready);
      const [surplus] = this.idle.splice(booting >= 0 ? booting : this.idle.length - 1, 1);
      void this.kill(surplus!);
    }
  }

  /** One runner booting or ready per waiting task, plus `warm` started ahead of need. */
  private refill(first = false): void {
    while (!this.stopping && this.idle.length + this.coming < this.wanted) {
      this.coming++;
      const spawning: Promise<Sandbox | undefined> = this.spawn(first).then(
        (sandbox) => {
          this.spawning.delete(spawning);
          if (!sandbox) return undefined;
          this.coming--;
          if (this.stopping) void this.kill(sandbox);
          else {
            this.idle.push(sandbox);
            this.dispatch();
          }
          return sandbox;
        },
        (e: unknown) => {
          this.spawning.delete(spawning);
          this.coming--;
          // No runner (its work dir could not be made): the task first in line fails, as a RunTask failure would.
          this.waiting.shift()?.reject(e instanceof Error ? e : new Error(String(e)));
          return undefined;
        },
      );
      this.spawning.add(spawning);
    }
  }

  /** Ready for a task: the best-ranked waiter gets it. */
  private markReady(sandbox: Sandbox): void {
    if (sandbox.ready) return;
    sandbox.ready = true;
    this.dispatch();
  }

  /** A runner that ended before it had a task: never handed out; another one takes its place. */
  private dropIdle(sandbox: Sandbox): void {
    const at = this.idle.indexOf(sandbox);
    if (at < 0) return;
    this.idle.splice(at, 1);
    this.refill();
  }

  /**
   * Runners loading their modules at once share the cores: capped, the first in line is up first
   * (RunTasks arrive in topological order) instead of all finishing late together.
   */
  private booting = 0;
  private readonly bootQueue: (() => void)[] = [];

  private async bootSlot(first = false): Promise<() => void> {
    const max = this.opts.maxBooting ?? availableParallelism();
    if (this.booting >= max) await new Promise<void>((resolve) => (first ? this.bootQueue.unshift(resolve) : this.bootQueue.push(resolve)));
    this.booting++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.booting--;
      this.bootQueue.shift()?.();
    };
  }

  /** A runner, once a boot slot is free; none (undefined) when by then no task and no warm place wants it. */
  private async spawn(first = false): Promise<Sandbox | undefined> {
    const booted = await this.bootSlot(first);
    // Decided in the same tick as it counts itself out: two spawns dropping at once never both go.
    if (this.stopping || this.idle.length + this.coming > this.wanted) {
      this.coming--;
      booted();
      return undefined;
    }
    const id = randomUUID().replaceAll('-', '');
    const workDir = join(this.opts.stateDir, 'sandboxes', id);
    await mkdir(workDir, { recursive: true, mode: 0o700 }).catch((e: unknown) => {
      booted();
      throw e;
    });
    const childEnv: Record<string, string> = { ...this.opts.baseEnv, CTD_TASK_FROM_STDIN: '1', CTD_WORK_DIR: workDir, HOME: workDir };
    const [command, ...args] = [
      ...(this.opts.commandPrefix?.() ?? []),
      ...this.isolation(workDir, childEnv),
      ...(this.opts.runnerCommand ?? [process.execPath, '--import', 'tsx', RUNNER]),
    ];
    const request: SpawnRequest = {
      command: command!,
      args,
      cwd: workDir,
      // bwrap gets --clearenv; without it, this object is the whole environment.
      env: this.bwrap ? { PATH: process.env.PATH ?? '/usr/bin:/bin' } : childEnv,
    };
    let closed!: () => void;
    const sandbox: Sandbox = { id, runner: NOT_STARTED, command: request.command, workDir, exited: new Promise<void>((resolve) => (closed = resolve)), ready: false };
    const label = () => sandbox.task?.CTD_STEP_ID ?? 'warm';
    const events: RunnerEvents = {
      stdout: (text) => {
        if (text.includes(RUNNER_READY)) {
          booted();
          this.markReady(sandbox);
        }
        const rest = text.replace(`${RUNNER_READY}\n`, '').trimEnd();
        if (rest) this.opts.log(`[${label()}] ${rest}`);
      },
      stderr: (text) => this.opts.log(`[${label()}] ${text.trimEnd()}`),
      close: (code, sig, lost) => {
        booted();
        this.dropIdle(sandbox);
        if (this.tasks.delete(taskArnOf(id))) this.holdQuota();
        if (sandbox.starting) clearTimeout(sandbox.starting);
        void rm(workDir, { recursive: true, force: true }).finally(closed);
        if (!sandbox.task) return; // a warm runner that never had a task: ECS would know no task either
        const { [TASK_ENV.taskArn]: taskArn = taskArnOf(id), ...env } = sandbox.task;
        this.emitStopped({
          taskArn,
          clusterArn: sandbox.clusterArn ?? '',
          env,
          ...(sandbox.stopReason !== undefined
            ? { stopCode: 'UserInitiated', stoppedReason: sandbox.stopReason }
            : lost !== undefined
              ? // As ECS reports the tasks of a host that went away.
                { stopCode: 'TerminationNotice', stoppedReason: `${lost}: its sandboxes were stopped` }
              : { stopCode: 'EssentialContainerExited', stoppedReason: 'Essential container in task exited' }),
          // A signal's death reads as Docker reports it: 128 + the signal's number.
          exitCode: code ?? (sig ? 128 + (constants.signals[sig] ?? 0) : undefined),
          ...(sig ? { containerReason: `killed by ${sig}` } : {}),
        });
      },
    };
    try {
      sandbox.runner = await this.startRunner(request, events);
    } catch (e) {
      booted();
      await rm(workDir, { recursive: true, force: true });
      throw e;
    }
    // A runner that never says it is ready (another runner command) holds its place only a while, then takes a task.
    setTimeout(() => {
      booted();
      this.markReady(sandbox);
    }, BOOT_SLOT_MAX_MS).unref();
    return sandbox;
  }

  /** Asks the spawner for the runner; a spawner that died meanwhile is replaced once. */
  private async startRunner(request: SpawnRequest, events: RunnerEvents): Promise<RunnerHandle> {
    for (let attempt = 0; ; attempt++) {
      if (!this.spawner?.usable) {
        this.spawner = new SandboxSpawner((reason) => this.opts.log(`${reason}: its sandboxes were stopped; the next sandbox starts a new spawner`));
      }
      try {
        return await this.spawner.spawn(request, events);
      } catch (e) {
        if (!(e instanceof SpawnerGoneError) || attempt > 0) throw e;
      }
    }
  }

  private emitStopped(stop: {
    taskArn: string;
    clusterArn: string;
    env: Record<string, string>;
    stopCode: string;
    stoppedReason: string;
    exitCode?: number | undefined;
    containerReason?: string;
  }): void {
    const event: EcsTaskStateChangeEvent = {
      source: 'aws.ecs',
      'detail-type': ECS_TASK_STATE_CHANGE,
      detail: {
        clusterArn: stop.clusterArn,
        taskArn: stop.taskArn,
        lastStatus: 'STOPPED',
        stopCode: stop.stopCode,
        stoppedReason: stop.stoppedReason,
        containers: [
          {
            name: RUNNER_CONTAINER_NAME,
            ...(stop.exitCode !== undefined ? { exitCode: stop.exitCode } : {}),
            ...(stop.containerReason ? { reason: stop.containerReason } : {}),
          },
        ],
        overrides: {
          containerOverrides: [{ name: RUNNER_CONTAINER_NAME, environment: Object.entries(stop.env).map(([name, value]) => ({ name, value })) }],
        },
      },
    };
    this.opts.onTaskStopped(event).catch((e: unknown) => this.opts.log(`task state event of ${stop.taskArn} not handled: ${String(e)}`));
  }

  private async kill(sandbox: Sandbox): Promise<void> {
    const pgid = sandbox.runner.pid;
    if (!pgid) return;
    signalGroup(pgid, 'SIGTERM');
    const killer = setTimeout(() => signalGroup(pgid, 'SIGKILL'), 3000);
    await sandbox.exited;
    clearTimeout(killer);
    // Whatever the runner started in its group goes too.
    signalGroup(pgid, 'SIGKILL');
  }

  /** bwrap arguments: a new view of the machine in which the engine's own state is invisible. */
  private isolation(workDir: string, env: Record<string, string>): string[] {
    if (!this.bwrap) return [];
    const setenv = Object.entries(env).flatMap(([k, v]) => ['--setenv', k, v]);
    return [
      this.bwrap,
      ...BWRAP_BASE_ARGS,
      // The project (runner bundle, ansible plugins) may itself live under /tmp: bring it back, read-only,
      // before hiding the state dir, which may sit inside the project (./.ctd).
      '--ro-bind',
      REPO_ROOT,
      REPO_ROOT,
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

/** The sandbox's own view of the machine: new namespaces, no capabilities, read-only /, private /tmp. */
export const BWRAP_BASE_ARGS: readonly string[] = [
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
];

function findBwrap(): string | undefined {
  const found = spawnSync('sh', ['-c', 'command -v bwrap'], { encoding: 'utf8' });
  const path = found.stdout.trim();
  if (!path) return undefined;
  // bwrap can be installed yet unusable (no user namespaces): try it once.
  const probe = spawnSync(path, ['--ro-bind', '/', '/', '--unshare-pid', '--', '/bin/true']);
  return probe.status === 0 ? path : undefined;
}

/** A start latency: log-normal through its median and 90th percentile (the shape of Fargate's long tail). */
export interface StartLatency {
  median: number;
  p90: number;
  /** Uniform [0, 1) source; default Math.random (the bench passes a seeded one). */
  random?: () => number;
}

/** Seconds as configured → milliseconds on the engine's clock. */
export function scaleLatency(latency: { median: number; p90: number; random?: () => number }, timeScale: number): StartLatency {
  if (!(latency.median > 0) || !(latency.p90 >= latency.median)) {
    throw new Error(`sandbox start latency: need 0 < median ≤ p90, got median ${latency.median}, p90 ${latency.p90}`);
  }
  return { median: latency.median * 1000 * timeScale, p90: latency.p90 * 1000 * timeScale, ...(latency.random ? { random: latency.random } : {}) };
}

/** z of the 90th percentile of the standard normal. */
const Z90 = 1.2815515655446004;

/** One draw: exp(ln median + σ·z), σ = ln(p90/median)/z₉₀, z by Box–Muller. */
export function sampleLatency(latency: StartLatency): number {
  const random = latency.random ?? Math.random;
  const sigma = Math.log(latency.p90 / latency.median) / Z90;
  const z = Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  return Math.round(latency.median * Math.exp(sigma * z));
}

/**
 * A task's place in the boot queue. The ASL passes the step's release (TASK_ENV.release, JSON) so a
 * sandbox pre-started ahead of its release yields to one whose step already waits for it.
 */
export function bootRankOf(env: Record<string, string>): BootRank {
  if ((SYSTEM_STEP_IDS as readonly string[]).includes(env[TASK_ENV.stepId] ?? '')) return BOOT_RANK.system;
  const release = env[TASK_ENV.release];
  if (release === undefined) return BOOT_RANK.released;
  try {
    return (JSON.parse(release) as { prestart?: unknown }).prestart === true ? BOOT_RANK.prestarted : BOOT_RANK.released;
  } catch {
    return BOOT_RANK.released;
  }
}

/** Overrides.ContainerOverrides[].Environment of RunTask → a plain map. */
export function containerEnvironment(parameters: unknown): Record<string, string> {
  const overrides = (parameters as { Overrides?: { ContainerOverrides?: { Environment?: { Name: string; Value: string }[] }[] } })?.Overrides;
  const env: Record<string, string> = {};
  for (const container of overrides?.ContainerOverrides ?? []) {
    for (const { Name, Value } of container.Environment ?? []) env[Name] = String(Value);
  }
  return env;
}
