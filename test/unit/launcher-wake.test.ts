import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RUNNER_READY, TASK_ENV } from '../../core/config/names.ts';
import type { EcsTaskStateChangeEvent } from '../../adapters/aws/ecsTaskEvents.ts';
import { LocalSandboxes } from '../../local/sandbox/launcher.ts';
import { runTaskParameters } from '../helpers/runTask.ts';

/**
 * The local launcher's wake (issue 12): one line on the runner's stdin after its task. The runner here
 * reports each stdin line it gets as `line <n>: <text>` and ends at its third line.
 */

const RUNNER = `
process.stdout.write(${JSON.stringify(`${RUNNER_READY}\n`)});
let n = 0;
require('node:readline').createInterface({ input: process.stdin }).on('line', (text) => {
  n++;
  process.stdout.write('line ' + n + ': ' + (n === 1 ? 'task' : text) + '\\n');
  if (n === 3) process.exit(0);
});`;

describe('Local sandboxes: wake', () => {
  let dir: string;
  let launcher: LocalSandboxes | undefined;

  afterEach(async () => {
    await launcher?.stopAll();
    launcher = undefined;
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("writes a line carrying nothing to the task's runner; an unknown or ended task is a no-op", async () => {
    dir = await mkdtemp(join(tmpdir(), 'ctd-wake-'));
    const lines: string[] = [];
    const waiters: { match: string; resolve: () => void }[] = [];
    const stopped: EcsTaskStateChangeEvent[] = [];
    let onStopped = () => undefined as void;
    launcher = new LocalSandboxes({
      stateDir: dir,
      baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      isolate: false,
      warm: 0,
      runnerCommand: [process.execPath, '-e', RUNNER],
      onTaskStopped: async (event) => {
        stopped.push(event);
        onStopped();
      },
      log: (line) => {
        lines.push(line);
        for (const w of waiters.filter((w) => line.includes(w.match))) w.resolve();
      },
    });
    const seen = (match: string) =>
      lines.some((l) => l.includes(match)) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ match, resolve }));
    const { tasks } = await launcher.runTask(runTaskParameters('s1', { [TASK_ENV.taskToken]: 'token-s1-secret' }), new AbortController().signal);
    const taskArn = tasks[0]!.taskArn;
    await seen('[s1] line 1: task');

    launcher.wake('arn:aws:ecs:local:000000000000:task/ctd-local/unknown');
    launcher.wake(taskArn);
    await seen('[s1] line 2:');
    // The wake carries no data: not the token, not the task.
    expect(lines.find((l) => l.includes('line 2:'))).toBe('[s1] line 2: wake');

    // Its third line ends it; a wake after its end is ignored, and nothing throws.
    const ended = new Promise<void>((resolve) => (onStopped = resolve));
    launcher.wake(taskArn);
    await ended;
    expect(() => launcher!.wake(taskArn)).not.toThrow();
    expect(stopped.map((e) => e.detail.containers?.[0]?.exitCode)).toEqual([0]);
    expect(lines.filter((l) => l.includes('line '))).toEqual(['[s1] line 1: task', '[s1] line 2: wake', '[s1] line 3: wake']);
    expect(lines.join('\n')).not.toContain('secret');
  });
});
