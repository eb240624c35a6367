import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorName } from '../../core/errors.ts';
import { bastionRules, probeBastion, stepOf } from '../helpers/agentless.ts';
import { startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * The bootstrap check through the whole engine. Time is scaled by 0.25: the 180 s limit becomes
 * 45 s; Lambda and heartbeat limits (60 s) become 15 s, against a heartbeat every 5 s. At 0.15 a
 * sandbox that starts slowly on a loaded two-core machine had 9 s for its first heartbeat.
 */
const TIME_SCALE = 0.25;

let t: TestEngine;
beforeAll(async () => {
  t = await startTestEngine({ timeScale: TIME_SCALE });
});
afterAll(async () => {
  await t?.stop();
});

describe('Local engine: a VM that never becomes reachable', () => {
  it('fails provision with Ctd.VmBootstrapTimeout at once, tells the user to check cloud-init, and still closes the bastion', { timeout: 240_000 }, async () => {
    const body = {
      name: 'bootstrap',
      bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
      networks: [{ name: 'private', cidr: '10.0.0.0/24' }],
      // cloud-init stops at a failing bootcmd: the deployment key is never installed.
      vms: [{ name: 'broken', network: 'private', image: 'debian-12', flavor: 'm1.small', userData: { bootcmd: ['exit 1'] } }],
      workflow: {
        steps: [
          { id: 'provision', action: 'provision' },
          { id: 'hello', action: 'ssh', targets: ['broken'], files: [], command: 'true', dependsOn: ['provision'] },
        ],
      },
    };
    const { deploymentId } = await t.client.submit(body);
    const done = await t.waitForEnd(deploymentId, 200_000);

    const provision = stepOf(done, 'provision');
    expect(provision).toMatchObject({ status: 'failed', error: ErrorName.VmBootstrapTimeout, attempt: 1 });
    expect(provision.cause).toContain('broken was not reachable over SSH through the bastion within 180 s');
    expect(provision.cause).toMatch(/log in to the VM .*check cloud-init/);
    expect(stepOf(done, 'hello').status).toBe('skipped');
    expect(done).toMatchObject({ status: 'FAILED', error: ErrorName.VmBootstrapTimeout });

    // Not retried: the state machine scheduled the provision sandbox once.
    const { events } = await t.client.history(deploymentId);
    const failures = events.filter((e) => e.type === 'TaskFailed').map((e) => (e as { taskFailedEventDetails?: { error?: string } }).taskFailedEventDetails?.error);
    expect(failures.filter((e) => e === ErrorName.VmBootstrapTimeout)).toHaveLength(1);

    expect(stepOf(done, 'bastion-close').status).toBe('succeeded');
    expect(await bastionRules(t.stateDir)).toEqual([]);
    expect(await probeBastion(t.bastionAddress)).toBe('refused');
  });
});
