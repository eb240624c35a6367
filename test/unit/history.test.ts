import { describe, expect, it } from 'vitest';
import { attributeEvents, stepTimelines } from '../../core/history.ts';
import type { HistoryEvent } from '../../core/model.ts';

/** AWS-shaped events, built the way Step Functions chains them (previousEventId per Map iteration). */
function history(): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  let t = Date.parse('2026-01-01T00:00:00Z');
  const add = (type: string, previousEventId: number | undefined, detailsKey?: string, details?: Record<string, unknown>): number => {
    const id = events.length + 1;
    t += 1000;
    events.push({ id, previousEventId, timestamp: new Date(t).toISOString(), type, ...(detailsKey ? { [detailsKey]: details } : {}) });
    return id;
  };
  const entered = (type: string, prev: number, name: string, input: unknown) => add(type, prev, 'stateEnteredEventDetails', { name, input: JSON.stringify(input) });
  const exited = (type: string, prev: number, name: string, output: unknown) => add(type, prev, 'stateExitedEventDetails', { name, output: JSON.stringify(output) });
  const root = { deploymentId: 'd-1' };
  let p = add('ExecutionStarted', 0, 'executionStartedEventDetails', { input: JSON.stringify(root) });
  p = entered('TaskStateEntered', p, 'OpenBastionAccess', root);
  p = add('TaskScheduled', p);
  p = add('TaskSucceeded', p);
  p = exited('TaskStateExited', p, 'OpenBastionAccess', root);
  p = entered('MapStateEntered', p, 'RunWorkflow', root);
  const mapStarted = add('MapStateStarted', p);
  const it0 = add('MapIterationStarted', mapStarted, 'mapIterationStartedEventDetails', { name: 'RunWorkflow', index: 0 });
  const it1 = add('MapIterationStarted', mapStarted, 'mapIterationStartedEventDetails', { name: 'RunWorkflow', index: 1 });
  // Iteration 0 ("flaky"): waits, then two sandbox attempts (a retry after Ctd.BackendUnreachable).
  const flaky = { deploymentId: 'd-1', stepId: 'flaky' };
  let a = entered('TaskStateEntered', it0, 'AwaitDependencies', flaky);
  a = add('TaskScheduled', a);
  // Iteration 1 interleaves: its events chain to its own iteration, not to the event before them.
  let b = entered('TaskStateEntered', it1, 'AwaitDependencies', { deploymentId: 'd-1', stepId: 'other' });
  a = add('TaskSucceeded', a);
  a = exited('TaskStateExited', a, 'AwaitDependencies', flaky);
  a = entered('TaskStateEntered', a, 'RunStepInSandbox', flaky);
  a = add('TaskScheduled', a);
  a = add('TaskFailed', a, 'taskFailedEventDetails', { error: 'Ctd.BackendUnreachable', cause: 'the backend server is unreachable' });
  b = add('TaskScheduled', b);
  a = add('TaskScheduled', a);
  a = add('TaskSucceeded', a);
  a = exited('TaskStateExited', a, 'RunStepInSandbox', flaky);
  a = add('MapIterationSucceeded', a, 'mapIterationSucceededEventDetails', { name: 'RunWorkflow', index: 0 });
  b = add('TaskSucceeded', b);
  b = add('MapIterationSucceeded', b, 'mapIterationSucceededEventDetails', { name: 'RunWorkflow', index: 1 });
  // The Map's own end chains to the last iteration's event; it still belongs to no step.
  p = add('MapStateSucceeded', b);
  p = exited('MapStateExited', p, 'RunWorkflow', root);
  add('ExecutionSucceeded', p);
  return events;
}

describe('Function: attributeEvents', () => {
  it('names the workflow step of every event inside a step, and none for the engine around them', () => {
    const events = attributeEvents(history(), ['flaky', 'other']);
    const byType = (type: string) => events.filter((e) => e.type === type).map((e) => e.stepId);
    expect(byType('MapIterationStarted')).toEqual(['flaky', 'other']);
    // TaskScheduled/TaskFailed carry no step themselves: they inherit through previousEventId.
    expect(byType('TaskScheduled')).toEqual(['bastion-open', 'flaky', 'flaky', 'other', 'flaky']);
    expect(byType('TaskFailed')).toEqual(['flaky']);
    expect(byType('MapStateSucceeded')).toEqual([undefined]);
    expect(byType('ExecutionStarted')).toEqual([undefined]);
    expect(byType('MapStateExited')).toEqual([undefined]);
  });
});

describe('Function: stepTimelines', () => {
  it('gives each retry its own attempt, with the error and the wait before the next', () => {
    const steps = stepTimelines(attributeEvents(history(), ['flaky', 'other']));
    const flaky = steps.find((s) => s.stepId === 'flaky');
    expect(flaky?.attempts.map((x) => [x.attempt, x.outcome, x.error])).toEqual([
      [1, 'failed', 'Ctd.BackendUnreachable'],
      [2, 'succeeded', undefined],
    ]);
    // Two events (TaskScheduled of "other") passed between the failure and the retry, one second each.
    expect(flaky?.attempts[0]?.retryWaitSeconds).toBe(2);
    expect(flaky?.waiting?.until).toBeDefined();
    expect(steps.find((s) => s.stepId === 'bastion-open')?.attempts).toHaveLength(1);
    // "other" never reached a sandbox state: its AwaitDependencies task is no attempt.
    expect(steps.find((s) => s.stepId === 'other')?.attempts).toEqual([]);
  });
});
