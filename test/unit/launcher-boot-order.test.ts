import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RUNNER_READY, TASK_ENV } from '../../core/config/names.ts';
import { BOOT_RANK, bootRankOf, LocalSandboxes } from '../../local/sandbox/launcher.ts';
import { runTaskParameters } from '../helpers/runTask.ts';

/**
 * The local launcher's boot queue (issue 12, item 4): runners boot one at a time here (maxBooting 1,
 * none kept warm), so which task gets the first ready runner is the order steps start in.
 */

// A runner that is ready at once and never runs a step: it waits on its stdin (kept open after the task, for wakes) until stopped.
const RUNNER = `process.stdout.write(${JSON.stringify(`${RUNNER_READY}\n`)}); process.stdin.resume(); process.stdin.on('end', () => process.exit(0));`;

describe('Local sandboxes: boot order', () => {
  let dir: string;
  let launcher: LocalSandboxes | undefined;

  afterEach(async () => {
    await launcher?.stopAll();
    launcher = undefined;
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('gives the first ready runner to a released step before pre-started steps that asked earlier', async () => {
    dir = await mkdtemp(join(tmpdir(), 'ctd-boot-order-'));
    launcher = new LocalSandboxes({
      stateDir: dir,
      baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
      isolate: false,
      warm: 0,
      maxBooting: 1,
      runnerCommand: [process.execPath, '-e', RUNNER],
      onTaskStopped: async () => undefined,
      log: () => undefined,
    });
    const started: string[] = [];
    const signal = new AbortController().signal;
    const run = (stepId: string, release?: Record<string, unknown>) =>
      launcher!.runTask(runTaskParameters(stepId, release ? { [TASK_ENV.release]: JSON.stringify(release) } : {}), signal).then((r) => {
        started.push(stepId);
        return r;
      });
    // Two pre-started steps ask first; the released one asks last, while the first runner still boots.
    await Promise.all([
      run('pre-1', { run: true, prestart: true, timeoutSeconds: 900 }),
      run('pre-2', { run: true, prestart: true, timeoutSeconds: 900 }),
      run('released', { run: true, timeoutSeconds: 300 }),
    ]);
    expect(started).toEqual(['released', 'pre-1', 'pre-2']);
  });

  it('ranks bastion-open/close first, released steps next, pre-started steps last', () => {
    const env = (stepId: string, release?: string) => ({ [TASK_ENV.stepId]: stepId, ...(release !== undefined ? { [TASK_ENV.release]: release } : {}) });
    expect(bootRankOf(env('bastion-open'))).toBe(BOOT_RANK.system);
    expect(bootRankOf(env('bastion-close'))).toBe(BOOT_RANK.system);
    expect(bootRankOf(env('s1', '{"run":true,"prestart":true,"timeoutSeconds":9}'))).toBe(BOOT_RANK.prestarted);
    expect(bootRankOf(env('s1', '{"run":true,"timeoutSeconds":9}'))).toBe(BOOT_RANK.released);
    // No hint (an older state machine) or an unreadable one: served as released, never starved.
    expect(bootRankOf(env('s1'))).toBe(BOOT_RANK.released);
    expect(bootRankOf(env('s1', 'not json'))).toBe(BOOT_RANK.released);
  });

  it('the state machine passes each step sandbox its release, which says whether it was pre-started', async () => {
    const asl = JSON.parse(await readFile(new URL('../../statemachine/deployment.asl.json', import.meta.url), 'utf8')) as unknown;
    const found: unknown[] = [];
    const visit = (node: unknown, name?: string): void => {
      if (Array.isArray(node)) node.forEach((n) => visit(n));
      else if (node && typeof node === 'object') {
        if (name === 'RunStepInSandbox') found.push(node);
        for (const [k, v] of Object.entries(node)) visit(v, k);
      }
    };
    visit(asl);
    expect(found).toHaveLength(1);
    const environment = (found[0] as { Parameters: { Overrides: { ContainerOverrides: { Environment: Record<string, string>[] }[] } } }).Parameters.Overrides.ContainerOverrides[0]!.Environment;
    expect(environment).toContainEqual({ Name: TASK_ENV.release, 'Value.$': 'States.JsonToString($.release)' });
  });
});
