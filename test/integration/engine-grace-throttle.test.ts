import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { functionArn } from '../../local/functions.ts';
import { runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * Issue 10 item 11: the first GracePeriod invoke is throttled by the Lambda service. The grace
 * must go on (Retry), so a step that finishes inside it still succeeds instead of being aborted.
 * Time scale 0.05: the 120 s grace is 6 s, the straggler needs ~2 s.
 */
let t: TestEngine;
const throttled: string[] = [];
beforeAll(async () => {
  t = await startTestEngine({
    timeScale: 0.05,
    lambdaFault: (name) => {
      if (name !== functionArn('gracePeriod') || throttled.length > 0) return undefined;
      throttled.push(name);
      return 'Lambda.TooManyRequestsException';
    },
  });
});
afterAll(async () => {
  await t?.stop();
});

describe('Local engine: GracePeriod under a Lambda throttle', () => {
  it('retries the throttled GracePeriod: a step still running finishes within the grace, not aborted', async () => {
    const { deploymentId } = await t.client.submit(
      runDeployment([
        { id: 'slow', command: 'sleep 2; echo finished' },
        { id: 'broken', command: 'sleep 0.3; exit 3' },
      ]),
    );
    const done = await t.waitForEnd(deploymentId);
    expect(throttled, 'the fault was injected').toHaveLength(1);
    const status = Object.fromEntries(done.steps.map((s) => [s.stepId, s.status]));
    expect(status, t.logTail()).toMatchObject({ broken: 'failed', slow: 'succeeded', 'bastion-close': 'succeeded' });
    expect(done.status).toBe('FAILED');
  }, 120_000);
});
