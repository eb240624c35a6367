import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorName } from '../../core/errors.ts';
import { bastionRules, stepOf } from '../helpers/agentless.ts';
import { processAlive, runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * Issue 10, item 3: cancelling or aborting an ansible step while its task runs on a VM once killed
 * the whole local engine (the ssh2 VM server wrote the command's exit to a client that had gone,
 * and with OpenSSH's compression ssh2 threw inside the engine). Through the whole engine, with a
 * real ansible-playbook over the bastion: the engine outlives the VM command, the command's
 * process is gone, and the engine still runs the next deployment. Time is scaled by 0.25 (the
 * 120 s grace is 30 s).
 */

let t: TestEngine;
let dir: string;
beforeAll(async () => {
  t = await startTestEngine({ timeScale: 0.25 });
  dir = await mkdtemp(join(tmpdir(), 'ctd-ansible-cancel-'));
});
afterAll(async () => {
  await t?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** One VM running a playbook whose task writes its shell's pid to `pidFile`, then sleeps `seconds`. */
function slowPlaybook(pidFile: string, seconds: number, extraSteps: Record<string, unknown>[] = []) {
  return {
    name: 'ansible-cancel',
    bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' },
    networks: [{ name: 'private', cidr: '10.0.0.0/24' }],
    vms: [{ name: 'vm1', network: 'private', image: 'debian-12', flavor: 'm1.small' }],
    files: {
      'slow.yml': [
        '- hosts: all',
        '  gather_facts: false',
        '  tasks:',
        '    - name: a long task',
        `      ansible.builtin.shell: echo $$ > ${pidFile}; sleep ${seconds}; echo done`,
        '',
      ].join('\n'),
    },
    workflow: {
      steps: [
        { id: 'provision', action: 'provision' },
        { id: 'slow', action: 'ansible', targets: ['vm1'], playbook: 'slow.yml', dependsOn: ['provision'] },
        ...extraSteps,
      ],
    },
  };
}

/** The pid the VM's task wrote, once it runs. */
async function vmTaskPid(pidFile: string, deploymentId: string): Promise<number> {
  let pid = 0;
  await expect
    .poll(async () => (pid = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim())), {
      timeout: 120_000,
      interval: 200,
      message: `the ansible task of ${deploymentId} never started on the VM\n${t.logTail()}`,
    })
    .toBeGreaterThan(0);
  return pid;
}

/** What a user would check afterwards: the engine answers, the rule is closed, and it runs the next deployment. */
async function engineStillServes(deploymentId: string): Promise<void> {
  expect((await bastionRules(t.stateDir)).filter((r) => r.deploymentId === deploymentId)).toEqual([]);
  const { deploymentId: next } = await t.client.submit(runDeployment([{ id: 'after', command: 'echo still here' }]));
  expect((await t.waitForEnd(next, 90_000)).status, t.logTail()).toBe('SUCCEEDED');
}

describe('an ansible step stopped while its task runs on the VM', () => {
  it('cancel: the deployment is CANCELLED, the VM command is gone, and the engine lives on past the command\'s own end', async () => {
    const pidFile = join(dir, 'cancel.pid');
    const sleepSeconds = 12;
    const { deploymentId } = await t.client.submit(slowPlaybook(pidFile, sleepSeconds));
    const pid = await vmTaskPid(pidFile, deploymentId);
    // Anywhere in the first part of the task: the fault came when the command ended after its client had gone.
    await new Promise((r) => setTimeout(r, Math.random() * 4000));
    await t.client.cancel(deploymentId);

    const done = await t.waitForEnd(deploymentId, 90_000);
    expect(done.status, t.logTail()).toBe('CANCELLED');
    expect(stepOf(done, 'slow').status).toBe('cancelled');
    await expect.poll(() => processAlive(pid), { timeout: 10_000, message: `VM task pid ${pid}` }).toBe(false);
    // Past the moment the command would have ended on its own.
    await new Promise((r) => setTimeout(r, sleepSeconds * 1000));
    await engineStillServes(deploymentId);
  }, 240_000);

  it('abort: a sibling step fails, the grace ends, the ansible step is aborted and the engine lives on', async () => {
    const pidFile = join(dir, 'abort.pid');
    // Longer than the scaled 30 s grace, so the grace's end aborts it mid-command.
    const sleepSeconds = 60;
    const body = slowPlaybook(pidFile, sleepSeconds, [
      // A run step's sandbox has a private /tmp, so it cannot watch the pid file: a few seconds let ansible start.
      { id: 'breaks', action: 'run', dependsOn: ['provision'], command: 'sleep 8; echo broken >&2; exit 4' },
    ]);
    const { deploymentId } = await t.client.submit(body);
    const pid = await vmTaskPid(pidFile, deploymentId);

    const done = await t.waitForEnd(deploymentId, 150_000);
    expect(done, t.logTail()).toMatchObject({ status: 'FAILED', error: ErrorName.StepFailed });
    expect(stepOf(done, 'breaks').status).toBe('failed');
    expect(stepOf(done, 'slow').status).toBe('aborted');
    await expect.poll(() => processAlive(pid), { timeout: 10_000, message: `VM task pid ${pid}` }).toBe(false);
    await engineStillServes(deploymentId);
  }, 300_000);
});
