import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RUNNER_READY } from '../../core/config/names.ts';
import { LocalSandboxes } from '../../local/sandbox/launcher.ts';
import { processesUnder, seeded, sleep } from '../helpers/endings.ts';
import { runTaskParameters } from '../helpers/runTask.ts';

/**
 * The local launcher's warm pool stays bounded. RunTasks whose execution stops while their runners
 * boot (a cancel fails the Map, and the Parallel aborts bastion-open's RunTask) used to leave those
 * runners idle beside the pool until the engine stopped: CI's endings matrix found four idle runners
 * where the pool holds two. Each round aborts a random number of RunTasks at a random moment of their
 * runners' boot and counts the runners left in /proc. Replay a round with CTD_POOL_SEED.
 */

const SEED = Number(process.env.CTD_POOL_SEED ?? Math.floor(Math.random() * 2 ** 31));
// eslint-disable-next-line no-console -- the seed is what makes a failure replayable
console.log(`launcher pool: seed ${SEED} (replay with CTD_POOL_SEED=${SEED})`);

/** A runner ready after `bootMs`, which then waits on its stdin (kept open after the task) until stopped. */
const runner = (bootMs: number) =>
  `setTimeout(() => process.stdout.write(${JSON.stringify(`${RUNNER_READY}\n`)}), ${bootMs}); process.stdin.resume(); process.stdin.on('end', () => process.exit(0));`;

const WARM = 1;

describe('Local sandboxes: warm pool', () => {
  let dir: string;
  let launcher: LocalSandboxes | undefined;

  afterEach(async () => {
    await launcher?.stopAll();
    launcher = undefined;
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('keeps only the warm runners once the RunTasks they booted for were aborted (8 seeded rounds)', { timeout: 120_000 }, async () => {
    const random = seeded(SEED);
    const between = (lo: number, hi: number) => Math.floor(lo + random() * (hi - lo));
    for (let round = 0; round < 8; round++) {
      dir = await mkdtemp(join(tmpdir(), 'ctd-pool-'));
      const tasks = between(2, 7);
      const bootMs = between(50, 250);
      const abortAfter = between(0, bootMs + 150);
      const label = `round ${round}: ${tasks} RunTasks, boot ${bootMs} ms, aborted after ${abortAfter} ms`;
      launcher = new LocalSandboxes({
        stateDir: dir,
        baseEnv: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
        isolate: false,
        warm: WARM,
        maxBooting: between(1, 3),
        runnerCommand: [process.execPath, '-e', runner(bootMs)],
        onTaskStopped: async () => undefined,
        log: () => undefined,
      });
      const stop = new AbortController();
      const runs = Array.from({ length: tasks }, (_, i) => launcher!.runTask(runTaskParameters(`s${i}`), stop.signal));
      await sleep(abortAfter);
      stop.abort();
      // Each either had its runner (stopped with its execution) or never got one.
      await Promise.allSettled(runs);

      // From outside: the runners alive under the state dir settle at the warm pool, booting ones included.
      const settled = () => processesUnder(dir).length === WARM && launcher!.warmCount === WARM;
      for (let i = 0; i < 100 && !settled(); i++) await sleep(50);
      expect(processesUnder(dir).length, `${label}: runners alive (launcher holds ${launcher.warmCount})`).toBe(WARM);
      expect(launcher.warmCount, `${label}: runners the launcher holds`).toBe(WARM);

      // And the pool still serves: a new RunTask gets a runner.
      const next = await launcher.runTask(runTaskParameters('next'), new AbortController().signal);
      expect(next.tasks, label).toHaveLength(1);
      await launcher.stopAll();
      launcher = undefined;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
