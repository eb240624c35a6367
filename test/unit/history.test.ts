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

/**
 * The nested shape (issue 12): RunWorkflow maps over batches, each batch is the Map RunBatch over its
 * steps. An inner iteration's index is its place in its batch, so index 0 is a step in every batch.
 */
function nestedHistory(batches: string[][]): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  const add = (type: string, previousEventId: number | undefined, detailsKey?: string, details?: Record<string, unknown>): number => {
    const id = events.length + 1;
    events.push({ id, previousEventId, timestamp: new Date(Date.parse('2026-01-01T00:00:00Z') + id * 1000).toISOString(), type, ...(detailsKey ? { [detailsKey]: details } : {}) });
    return id;
  };
  const entered = (type: string, prev: number, name: string, input: unknown) => add(type, prev, 'stateEnteredEventDetails', { name, input: JSON.stringify(input) });
  const exited = (type: string, prev: number, name: string, output: unknown) => add(type, prev, 'stateExitedEventDetails', { name, output: JSON.stringify(output) });
  const root = { deploymentId: 'd-1', prepared: { batches } };
  let p = add('ExecutionStarted', 0, 'executionStartedEventDetails', { input: JSON.stringify(root) });
  p = entered('MapStateEntered', p, 'RunWorkflow', root);
  const outer = add('MapStateStarted', p, 'mapStateStartedEventDetails', { length: batches.length });
  // Every batch and every step starts before any ends, interleaved.
  const lanes = batches.map((batch, b) => {
    const it = add('MapIterationStarted', outer, 'mapIterationStartedEventDetails', { name: 'RunWorkflow', index: b });
    const input = { deploymentId: 'd-1', stepIds: batch };
    const started = add('MapStateStarted', entered('MapStateEntered', it, 'RunBatch', input), 'mapStateStartedEventDetails', { length: batch.length });
    return { b, input, started, last: started };
  });
  const steps = lanes.flatMap((lane) =>
    batches[lane.b]!.map((stepId, index) => {
      const it = add('MapIterationStarted', lane.started, 'mapIterationStartedEventDetails', { name: 'RunBatch', index });
      const input = { deploymentId: 'd-1', stepId };
      return { lane, index, input, last: add('TaskScheduled', entered('TaskStateEntered', it, 'AwaitDependencies', input)) };
    }),
  );
  for (const step of [...steps].reverse()) {
    step.last = exited('TaskStateExited', add('TaskSucceeded', step.last), 'AwaitDependencies', step.input);
    step.lane.last = add('MapIterationSucceeded', step.last, 'mapIterationSucceededEventDetails', { name: 'RunBatch', index: step.index });
  }
  for (const lane of lanes) {
    const done = exited('MapStateExited', add('MapStateSucceeded', lane.last), 'RunBatch', lane.input);
    add('MapIterationSucceeded', done, 'mapIterationSucceededEventDetails', { name: 'RunWorkflow', index: lane.b });
  }
  add('MapStateSucceeded', events.length);
  return events;
}

describe('Function: attributeEvents, with RunWorkflow nested over batches', () => {
  it('names each step by the state its iteration entered, not by its index in its batch; the batches belong to no step', () => {
    const batches = [['a', 'b'], ['c', 'd', 'e']];
    const events = attributeEvents(nestedHistory(batches), batches.flat());
    const of = (type: string, map: string) =>
      events.filter((e) => e.type === type && (e[`${type.charAt(0).toLowerCase()}${type.slice(1)}EventDetails`] as { name?: string }).name === map).map((e) => e.stepId);
    expect(of('MapIterationStarted', 'RunBatch')).toEqual(['a', 'b', 'c', 'd', 'e']);
    expect(of('MapIterationSucceeded', 'RunBatch')).toEqual(['e', 'd', 'c', 'b', 'a']);
    expect(of('MapIterationStarted', 'RunWorkflow')).toEqual([undefined, undefined]);
    expect(of('MapIterationSucceeded', 'RunWorkflow')).toEqual([undefined, undefined]);
    expect(events.filter((e) => e.type === 'TaskSucceeded').map((e) => e.stepId)).toEqual(['e', 'd', 'c', 'b', 'a']);
    expect(events.filter((e) => e.type.startsWith('MapState')).every((e) => e.stepId === undefined)).toBe(true);
    expect(stepTimelines(events).map((t) => [t.stepId, t.waiting?.until !== undefined])).toEqual(batches.flat().map((id) => [id, true]));
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
