import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { EcsTaskStateChangeEvent } from '../../adapters/aws/ecsTaskEvents.ts';
import { RUNNER_READY, TASK_ENV } from '../../core/config/names.ts';
import { LocalSandboxes } from '../../local/sandbox/launcher.ts';
import { SandboxSpawner } from '../../local/sandbox/spawnerClient.ts';
import { runTaskParameters } from '../helpers/runTask.ts';

/**
 * The local launcher's runners are forked by a small spawner process, not by the engine (issue 12,
 * item 4: a fork of the engine's 200–400 MB blocked its event loop ~41 ms per sandbox). What an
 * operator sees in /proc: the runner's parent is the spawner; the spawner killed, its sandboxes' tasks
 * end as lost and nothing of them is left; the engine gone, the spawner and its sandboxes go too.
 * Dead processes are told apart from live ones by /proc state: this machine's pid 1 does not reap
 * orphans, so a killed orphan stays a zombie (no memory, no code running).
 */

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const bwrapUsable = (() => {
  const probe = new LocalSandboxes({ stateDir: tmpdir(), baseEnv: {}, warm: 0, onTaskStopped: async () => undefined, log: () => undefined });
  const usable = probe.isolated;
  void probe.stopAll();
  return usable;
})();

/** A runner that is ready at once, prints the step id of the task it reads on stdin, and runs until killed. */
function runnerScript(marker: string): string {
  return [
    `/* ${marker} */`,
    `process.stdout.write(${JSON.stringify(`${RUNNER_READY}\n`)});`,
    `let text = ''; process.stdin.on('data', (c) => { text += c; const nl = text.indexOf('\\n');`,
    `  if (nl >= 0) { console.log('task of ' + JSON.parse(text.slice(0, nl)).${TASK_ENV.stepId}); text = text.slice(nl + 1); } });`,
    `setInterval(() => undefined, 60000);`,
  ].join('\n');
}

interface Proc {
  pid: number;
  ppid: number;
  pgrp: number;
  state: string;
  cmdline: string;
}

async function processes(): Promise<Proc[]> {
  const found: Proc[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!stat) continue;
    const [state = '', ppid, pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    found.push({ pid: Number(pid), ppid: Number(ppid), pgrp: Number(pgrp), state, cmdline: cmdline.replaceAll('\0', ' ') });
  }
  return found;
}

const alive = (p: Proc) => p.state !== 'Z' && p.state !== 'X';
const stat = async (pid: number) => (await processes()).find((p) => p.pid === pid);
const isAlive = async (pid: number) => {
  const p = await stat(pid);
  return p !== undefined && alive(p);
};

/** Live processes whose command line carries the test's marker (a runner, or bwrap around one). */
const liveRunners = async (marker: string) => (await processes()).filter((p) => alive(p) && p.cmdline.includes(marker));

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe.each(bwrapUsable ? [false, true] : [false])('Local sandboxes: the spawner (bwrap %s)', (isolate) => {
  let dir: string;
  let launcher: LocalSandboxes | undefined;
  let stopped: EcsTaskStateChangeEvent[];
  let logs: string[];
  let marker: string;

  const start = async () => {
    dir = await mkdtemp(join(tmpdir(), 'ctd-spawner-'));
    stopped = [];
    logs = [];
    marker = `ctd-spawner-test-${randomBytes(6).toString('hex')}`;
    launcher = new LocalSandboxes({
      stateDir: dir,
      baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      isolate,
      warm: 0,
      runnerCommand: [process.execPath, '-e', runnerScript(marker)],
      onTaskStopped: async (e) => void stopped.push(e),
      log: (line) => void logs.push(line),
    });
    return launcher;
  };
  const run = async (stepId: string) => {
    const { tasks } = await launcher!.runTask(runTaskParameters(stepId), new AbortController().signal);
    await until(`${stepId}'s runner to read its task`, () => (logs.some((l) => l.includes(`task of ${stepId}`)) ? true : undefined));
    return { taskArn: tasks[0]!.taskArn, pgid: launcher!.processGroups().get(stepId)! };
  };

  afterEach(async () => {
    await launcher?.stopAll();
    launcher = undefined;
    // A failing run may leave runners behind (what these tests look for): they go with the test.
    if (marker) for (const p of await liveRunners(marker)) process.kill(p.pid, 'SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('forks runners from the spawner, not from the engine: the runner\'s parent is the spawner', async () => {
    const l = await start();
    const { taskArn, pgid } = await run('s1');
    const spawnerPid = l.spawnerPid!;
    expect(spawnerPid).toBeGreaterThan(0);
    expect(spawnerPid).not.toBe(process.pid);
    const spawner = await stat(spawnerPid);
    expect(spawner?.cmdline).toContain('local/sandbox/spawner.mjs');
    // Its parent is the engine; the runner's (bwrap's, when isolated) is the spawner.
    expect(spawner?.ppid).toBe(process.pid);
    expect((await stat(pgid))?.ppid).toBe(spawnerPid);
    expect(await liveRunners(marker)).not.toHaveLength(0);

    // The exit still reaches the engine: SIGTERM from StopTask reads as 128 + 15.
    await l.stopTask(taskArn, 'stopped by the test');
    await until('the STOPPED event', () => stopped[0]);
    expect(stopped[0]?.detail).toMatchObject({ taskArn, stopCode: 'UserInitiated', stoppedReason: 'stopped by the test', containers: [{ exitCode: 143 }] });
    expect(await liveRunners(marker)).toEqual([]);
    expect(await readdir(join(dir, 'sandboxes'))).toEqual([]);
  });

  it('a spawner killed mid-run: its sandboxes\' tasks stop as lost, none of their processes is left, the next RunTask works', async () => {
    const l = await start();
    const a = await run('a');
    const b = await run('b');
    const first = l.spawnerPid!;
    process.kill(first, 'SIGKILL');

    await until('two STOPPED events', () => (stopped.length >= 2 ? stopped : undefined));
    expect(stopped.map((e) => e.detail.taskArn).sort()).toEqual([a.taskArn, b.taskArn].sort());
    for (const event of stopped) {
      expect(event.detail).toMatchObject({ stopCode: 'TerminationNotice', containers: [{ exitCode: 137, reason: 'killed by SIGKILL' }] });
      expect(event.detail.stoppedReason).toContain(`the local sandbox spawner (pid ${first}) exited (killed by SIGKILL)`);
    }
    expect(await liveRunners(marker)).toEqual([]);
    expect((await processes()).filter((p) => alive(p) && (p.pgrp === a.pgid || p.pgrp === b.pgid))).toEqual([]);
    expect(await readdir(join(dir, 'sandboxes'))).toEqual([]);
    expect(logs.join('\n')).toContain('the next sandbox starts a new spawner');

    const c = await run('c');
    const second = l.spawnerPid!;
    expect(second).not.toBe(first);
    expect((await stat(c.pgid))?.ppid).toBe(second);
  });

  it('a spawner killed with a spawn unanswered: that RunTask still gets a runner, from a new spawner', async () => {
    const l = await start();
    const a = await run('a');
    const first = l.spawnerPid!;
    // Stopped, it reads nothing: b's spawn request waits in its channel, unanswered, until the kill.
    process.kill(first, 'SIGSTOP');
    const b = l.runTask(runTaskParameters('b'), new AbortController().signal);
    // b's work dir is made right before its request is sent (launcher.ts, spawn).
    await until("b's work dir", async () => ((await readdir(join(dir, 'sandboxes'))).length === 2 ? true : undefined));
    await new Promise((r) => setTimeout(r, 100));
    process.kill(first, 'SIGKILL');

    const { tasks } = await b;
    await until("b's runner to read its task", () => (logs.some((l) => l.includes('task of b')) ? true : undefined));
    const second = l.spawnerPid!;
    expect(second).not.toBe(first);
    expect((await stat(l.processGroups().get('b')!))?.ppid).toBe(second);
    // a's task was the spawner's: it stops as lost; b's, never started by it, is not reported stopped.
    await until("a's STOPPED event", () => stopped[0]);
    expect(stopped.map((e) => e.detail.taskArn)).toEqual([a.taskArn]);
    expect(stopped[0]?.detail.stopCode).toBe('TerminationNotice');
    expect(tasks[0]!.taskArn).not.toBe(a.taskArn);
    // Nothing of the dead spawner's is left: only b's runner (and bwrap around it) lives.
    expect((await liveRunners(marker)).every((p) => p.pgrp === l.processGroups().get('b'))).toBe(true);
  });

  it('the engine gone (its channel closed by SIGKILL): the spawner and every sandbox it started go too', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ctd-spawner-'));
    marker = `ctd-spawner-test-${randomBytes(6).toString('hex')}`;
    const engine = spawn(process.execPath, ['--import', 'tsx', join(REPO, 'test/helpers/launcherMain.ts')], {
      cwd: REPO,
      env: { ...process.env, CTD_TEST_LAUNCHER: JSON.stringify({ stateDir: dir, isolate, runner: runnerScript(marker), steps: ['x', 'y'] }) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    engine.stdout.on('data', (c: Buffer) => (out += c.toString()));
    engine.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const exited = new Promise((resolve) => engine.once('exit', resolve));
    try {
      const line = await until(`the launcher process's report\n${err}`, () => (out.includes('\n') ? out.split('\n')[0] : undefined), 60_000);
      const { spawnerPid, groups } = JSON.parse(line!) as { spawnerPid: number; groups: Record<string, number> };
      // Two tasks and one warm runner, all children of the spawner.
      await until('the warm runner', async () => ((await liveRunners(marker)).filter((p) => p.ppid === spawnerPid).length === 3 ? true : undefined));
      expect(Object.keys(groups).sort()).toEqual(['x', 'y']);

      engine.kill('SIGKILL');
      await exited;
      await until('the spawner to exit', async () => ((await isAlive(spawnerPid)) ? undefined : true));
      await until('every sandbox to be gone', async () => ((await liveRunners(marker)).length === 0 ? true : undefined));
      expect((await processes()).filter((p) => alive(p) && Object.values(groups).includes(p.pgrp))).toEqual([]);
    } finally {
      engine.kill('SIGKILL');
      for (const p of await liveRunners(marker)) process.kill(p.pid, 'SIGKILL');
    }
  });
});

describe('SandboxSpawner', () => {
  it('names itself, its pid and its signal when it was killed, even when a message to it failed first (EPIPE)', async () => {
    let reason: string | undefined;
    const spawner = new SandboxSpawner((r) => (reason = r));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const pid = spawner.pid!;
    process.kill(pid, 'SIGKILL');
    // Dead with its end of the channel closed, before this side's event loop has seen the exit: the send fails with EPIPE.
    const until = Date.now() + 200;
    while (Date.now() < until);
    const spawned = spawner.spawn({ command: '/bin/true', args: [], cwd: '/', env: {} }, { stdout: () => undefined, stderr: () => undefined, close: () => undefined });
    await expect(spawned).rejects.toThrow();
    await spawner.gone;
    expect(reason).toBe(`the local sandbox spawner (pid ${pid}) exited (killed by SIGKILL)`);
  });
});
