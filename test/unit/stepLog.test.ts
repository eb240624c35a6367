import { describe, expect, it } from 'vitest';
import { MemoryDeploymentStore } from '../../adapters/memory/memoryStore.ts';
import type { StepLogLine } from '../../core/model.ts';
import { MAX_PENDING_LINES, StepLog } from '../../sandbox/stepLog.ts';

/** A store whose log writes fail while `failing` is true, as DynamoDB does when throttled. */
class FlakyLogStore extends MemoryDeploymentStore {
  failing = true;
  attempts = 0;
  override async appendLogs(deploymentId: string, lines: StepLogLine[]): Promise<void> {
    this.attempts++;
    if (this.failing) throw Object.assign(new Error('Rate exceeded'), { name: 'ProvisionedThroughputExceededException' });
    return super.appendLogs(deploymentId, lines);
  }
}

const clock = { now: () => Date.parse('2026-11-26T12:00:00Z') };

describe('Class: StepLog', () => {
  it('keeps the lines of a failed write and stores them, in order, once the store works again', async () => {
    const store = new FlakyLogStore({ clock });
    const warnings: string[] = [];
    const log = new StepLog(store, 'd-1', 'a', 1, 60_000, (m) => warnings.push(m));
    log.line('stdout', 'one');
    await log.flush();
    log.line('stdout', 'two');
    await log.flush();
    expect(await store.getLogs('d-1')).toEqual([]);
    store.failing = false;
    log.line('stdout', 'three');
    await log.close();
    expect((await store.getLogs('d-1')).map((l) => [l.seq, l.text])).toEqual([
      [0, 'one'],
      [1, 'two'],
      [2, 'three'],
    ]);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toContain('ProvisionedThroughputExceededException');
    expect(warnings[1]).toContain('work again after 2 failed');
  });

  it('never rejects, even when every write fails, and says how many lines were lost', async () => {
    const store = new FlakyLogStore({ clock });
    const warnings: string[] = [];
    const log = new StepLog(store, 'd-1', 'a', 1, 1, (m) => warnings.push(m));
    log.line('stdout', 'my secret-free line');
    // The interval timer fires flushes that fail; an unhandled rejection would fail this test.
    await new Promise((r) => setTimeout(r, 30));
    await expect(log.close()).resolves.toBeUndefined();
    expect(store.attempts).toBeGreaterThan(1);
    expect(warnings.at(-1)).toBe('step log of a: 1 lines could not be stored');
    expect(warnings.join('\n')).not.toContain('my secret-free line');
  });

  it('bounds what it holds while the store refuses writes', async () => {
    const store = new FlakyLogStore({ clock });
    const warnings: string[] = [];
    const log = new StepLog(store, 'd-1', 'a', 1, 60_000, (m) => warnings.push(m));
    for (let i = 0; i < MAX_PENDING_LINES + 5; i++) log.line('stdout', `line ${i}`);
    await log.flush();
    store.failing = false;
    await log.close();
    const stored = await store.getLogs('d-1');
    expect(stored).toHaveLength(MAX_PENDING_LINES);
    expect(stored[0]?.text).toBe('line 5');
    expect(warnings.at(-1)).toBe('step log of a: 5 lines could not be stored');
  });
});
