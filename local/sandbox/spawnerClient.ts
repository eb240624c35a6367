import { spawn, type ChildProcess } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

/**
 * The engine's side of the sandbox spawner (spawner.mjs): runners are forked by that small process,
 * not by the engine, whose fork of a 200–400 MB address space blocked its event loop ~41 ms per sandbox.
 * The spawner exits when this side's channel closes (the engine stopped or died) and kills its runners.
 */

const SPAWNER = fileURLToPath(new URL('./spawner.mjs', import.meta.url));
/** How long a runner's group may take to die after the spawner went (SIGKILL: milliseconds in practice). */
const GROUP_DEATH_MAX_MS = 2000;

export interface SpawnRequest {
  command: string;
  args: string[];
  cwd: string;
  env: Record<string, string>;
}

/** What a runner does, as its process would tell its parent. */
export interface RunnerEvents {
  stdout(text: string): void;
  stderr(text: string): void;
  /** The runner ended. `lost`: the spawner died first; the runner's group was killed, its real exit is unknown. */
  close(code: number | null, signal: NodeJS.Signals | null, lost?: string): void;
}

/** A runner the spawner started: the leader of its own process group. */
export interface RunnerHandle {
  readonly pid: number;
  /** One line to the runner's stdin (the newline is added; it stays open for wakes); ignored once the runner is gone. */
  write(line: string): void;
}

type Message =
  | { op: 'spawned'; id: string; pid: number }
  | { op: 'spawn-error'; id: string; message: string }
  | { op: 'stdout' | 'stderr'; id: string; data: string }
  | { op: 'close'; id: string; code: number | null; signal: NodeJS.Signals | null };

/** The spawner died before answering: the launcher may ask a new one. */
export class SpawnerGoneError extends Error {
  override name = 'SpawnerGoneError';
}

export class SandboxSpawner {
  private readonly process: ChildProcess;
  private readonly pending = new Map<string, { events: RunnerEvents; resolve: (h: RunnerHandle) => void; reject: (e: Error) => void }>();
  private readonly runners = new Map<string, { pid: number; events: RunnerEvents }>();
  private closing = false;
  /** Set once the spawner process is gone and every runner it had is accounted for. */
  readonly gone: Promise<void>;
  private exitReason: string | undefined;

  /** `onGone` hears an unexpected exit (not one asked for with close), after its runners were killed. */
  constructor(onGone: (reason: string) => void) {
    this.process = spawn(process.execPath, [SPAWNER], {
      // Its own process group: a terminal's Ctrl-C is the engine's to handle (it stops the sandboxes, then closes the channel).
      detached: true,
      // Nothing of the engine's environment: the runners get theirs per spawn. (NODE_OPTIONS would load tsx, say.)
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
      serialization: 'json',
    });
    this.process.on('message', (m: Message) => this.receive(m));
    // Without a pid it never started. With one, an error is a message it could not take (EPIPE: it is dying), and its exit says why.
    const neverStarted = () => this.process.pid === undefined;
    this.process.on('error', (e) => {
      if (neverStarted()) this.exitReason ??= `the local sandbox spawner could not start: ${e.message}`;
    });
    // Gone once it exited and its channel closed: every message it sent before has been received.
    // ('close' would say the same, but never comes after this side disconnected.)
    const exited = new Promise<[number | null, NodeJS.Signals | null]>((resolve) => {
      this.process.once('exit', (code, signal) => resolve([code, signal]));
      this.process.on('error', () => {
        if (neverStarted()) resolve([null, null]);
      });
    });
    const disconnected = new Promise<void>((resolve) => this.process.once('disconnect', resolve));
    this.gone = Promise.all([exited, Promise.race([disconnected, exited.then(() => new Promise((r) => setTimeout(r, 1000)))])]).then(async ([[code, signal]]) => {
      const reason = this.exitReason ?? `the local sandbox spawner (pid ${this.process.pid ?? '?'}) exited (${signal ? `killed by ${signal}` : `exit code ${code}`})`;
      const expected = this.closing;
      await this.loseAll(reason);
      if (!expected) onGone(reason);
    });
    // Not a reason for the engine to stay up: when it exits, the closed channel ends the spawner.
    this.process.unref();
    this.idle();
  }

  get pid(): number | undefined {
    return this.process.pid;
  }

  /** Whether it can take spawns: running and not asked to close. */
  get usable(): boolean {
    return !this.closing && this.process.exitCode === null && this.process.signalCode === null && this.process.connected;
  }

  spawn(request: SpawnRequest, events: RunnerEvents): Promise<RunnerHandle> {
    if (!this.usable) return Promise.reject(new SpawnerGoneError(this.exitReason ?? 'the local sandbox spawner is gone'));
    const id = `${this.pid}-${++this.seq}`;
    return new Promise<RunnerHandle>((resolve, reject) => {
      this.pending.set(id, { events, resolve, reject });
      this.busy();
      this.process.send({ op: 'spawn', id, ...request });
    });
  }

  /** Closes the channel: the spawner kills what is left of its runners and exits. */
  async close(): Promise<void> {
    this.closing = true;
    // Held until it has exited: the caller waits for it.
    this.process.ref();
    if (this.process.connected) this.process.disconnect();
    await this.gone;
  }

  private seq = 0;

  private receive(m: Message): void {
    if (m.op === 'spawned' || m.op === 'spawn-error') {
      const waiting = this.pending.get(m.id);
      if (!waiting) return;
      this.pending.delete(m.id);
      if (m.op === 'spawn-error') {
        waiting.reject(new Error(`could not start the sandbox: ${m.message}`));
        this.idle();
        return;
      }
      const { events } = waiting;
      this.runners.set(m.id, { pid: m.pid, events });
      const send = (message: object) => {
        if (this.process.connected) this.process.send(message);
      };
      waiting.resolve({
        pid: m.pid,
        write: (line) => send({ op: 'write', id: m.id, data: `${line}\n` }),
      });
      return;
    }
    const runner = this.runners.get(m.id);
    if (!runner) return;
    if (m.op === 'close') {
      this.runners.delete(m.id);
      this.idle();
      runner.events.close(m.code, m.signal);
    } else runner.events[m.op](m.data);
  }

  /** The spawner is gone: pending spawns fail, and its runners are killed (bwrap's die with it; a bare runner would not). */
  private async loseAll(reason: string): Promise<void> {
    for (const { reject } of this.pending.values()) reject(new SpawnerGoneError(reason));
    this.pending.clear();
    const lost = [...this.runners.values()];
    this.runners.clear();
    await Promise.all(
      lost.map(async ({ pid, events }) => {
        signalGroup(pid, 'SIGKILL');
        await groupDead(pid);
        events.close(null, 'SIGKILL', reason);
      }),
    );
  }

  /** The channel keeps the engine's event loop alive only while runners run or start. */
  private busy(): void {
    this.process.channel?.ref();
  }

  private idle(): void {
    if (this.pending.size === 0 && this.runners.size === 0) this.process.channel?.unref();
  }
}

export function signalGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // already gone
  }
}

/**
 * Waits until no live process is left in the group, reading /proc: its members are no longer our
 * children, so no exit event comes. Zombies count as dead (a pid 1 that does not reap keeps them).
 */
async function groupDead(pgid: number): Promise<void> {
  const until = Date.now() + GROUP_DEATH_MAX_MS;
  while (Date.now() < until && (await groupAlive(pgid))) await new Promise((r) => setTimeout(r, 20));
}

export async function groupAlive(pgid: number): Promise<boolean> {
  const pids = await readdir('/proc').catch(() => [] as string[]);
  for (const pid of pids) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    // "pid (comm) state ppid pgrp …"; comm may hold spaces and parentheses.
    const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z' && state !== 'X') return true;
  }
  return false;
}
