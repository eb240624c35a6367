import { describe, expect, it } from 'vitest';
import type { StepView } from '../../core/api.ts';
import { changedStepLines, renderSteps, stepLabel, TtyRenderer } from '../../cli/progress.ts';

const now = Date.parse('2025-01-01T00:00:10Z');
const step = (over: Partial<StepView> & Pick<StepView, 'stepId'>): StepView => ({
  action: 'run',
  system: false,
  status: 'waiting',
  attempt: 0,
  dependsOn: [],
  ...over,
});

describe('Function: stepLabel', () => {
  it('shows a running step on its second attempt as a retry', () => {
    expect(stepLabel({ status: 'running', attempt: 1 })).toBe('running');
    expect(stepLabel({ status: 'running', attempt: 3 })).toBe('retrying 3');
    expect(stepLabel({ status: 'failed', attempt: 3 })).toBe('failed');
  });
});

describe('Function: renderSteps', () => {
  const steps: StepView[] = [
    step({ stepId: 'bastion-open', action: 'bastion-open', system: true, status: 'succeeded', attempt: 1, startedAt: '2025-01-01T00:00:00Z', endedAt: '2025-01-01T00:00:01.500Z' }),
    step({ stepId: 'provision', action: 'provision', status: 'running', attempt: 2, startedAt: '2025-01-01T00:00:02Z' }),
    step({ stepId: 'deploy', action: 'ssh', status: 'failed', attempt: 1, startedAt: '2025-01-01T00:00:02Z', endedAt: '2025-01-01T00:00:04Z', error: 'Ctd.StepFailed' }),
    step({ stepId: 'smoke', status: 'skipped' }),
    step({ stepId: 'bastion-close', action: 'bastion-close', system: true }),
  ];

  it('prints one line per step, system steps included, with status, duration and error', () => {
    const lines = renderSteps(steps, now);
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatch(/^✔ bastion-open\s+bastion-open\s+succeeded\s+1\.5s$/);
    expect(lines[1]).toMatch(/^▸ provision\s+provision\s+retrying 2\s+8\.0s$/);
    expect(lines[2]).toMatch(/^✖ deploy\s+ssh\s+failed\s+2\.0s  Ctd\.StepFailed$/);
    expect(lines[3]).toMatch(/^↷ smoke\s+run\s+skipped$/);
    expect(lines[4]).toMatch(/^· bastion-close\s+bastion-close\s+waiting$/);
  });

  it('aligns the status column across steps', () => {
    const lines = renderSteps(steps, now);
    const column = lines.map((l) => l.search(/succeeded|retrying|failed|skipped|waiting/));
    expect(new Set(column).size).toBe(1);
  });
});

describe('Function: changedStepLines', () => {
  it('prints a step again only when its status (or retry attempt) changes', () => {
    const seen = new Map<string, string>();
    const a = [step({ stepId: 'a', status: 'running', attempt: 1, startedAt: '2025-01-01T00:00:00Z' }), step({ stepId: 'b' })];
    expect(changedStepLines(a, seen, now)).toHaveLength(2);
    expect(changedStepLines(a, seen, now + 5000)).toEqual([]);
    const retry = [step({ stepId: 'a', status: 'running', attempt: 2, startedAt: '2025-01-01T00:00:00Z' }), step({ stepId: 'b' })];
    const lines = changedStepLines(retry, seen, now);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('retrying 2');
  });
});

describe('Class: TtyRenderer', () => {
  it('moves up over the previous block and clears it before redrawing', () => {
    const writes: string[] = [];
    const renderer = new TtyRenderer({ write: (s: string) => writes.push(s) });
    renderer.draw(['one', 'two']);
    renderer.draw(['three', 'four']);
    expect(writes[0]).toBe('\x1b[0Jone\ntwo\n');
    expect(writes[1]).toBe('\x1b[2F\x1b[0Jthree\nfour\n');
  });

  it('cuts lines to the terminal width so wrapping cannot break the redraw', () => {
    const writes: string[] = [];
    new TtyRenderer({ write: (s: string) => writes.push(s) }, 10).draw(['0123456789abcdef']);
    expect(writes[0]).toBe('\x1b[0J01234567…\n');
  });
});
