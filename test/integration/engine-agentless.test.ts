import { tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import type { DeploymentView } from '../../core/api.ts';
import { ErrorName } from '../../core/errors.ts';
import { OsApi } from '../helpers/openstackApi.ts';
import {
  bastionRules,
  deploymentPrivateKey,
  filesContaining,
  helloWorld,
  injectFault,
  keyNeedles,
  PRIVATE_KEY_MARKER,
  probeBastion,
  secretItems,
  stepOf,
  strangerHostKey,
} from '../helpers/agentless.ts';
import { processAlive, runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * Agentless execution through the whole engine and the pure-npm local cloud: the bastion's
 * allow-list and forwarding switch, host-key pinning, exit codes, the key's life on disk, and
 * the error table's retry. Time is scaled by 0.25: Retry intervals 10 s → 2.5 s, while the
 * heartbeat limit (15 s) still leaves a slow-starting sandbox on a loaded machine room.
 * Tests run in order: the first one needs a bastion that no deployment has opened yet.
 */

let t: TestEngine;
beforeAll(async () => {
  t = await startTestEngine({ timeScale: 0.25 });
});
afterAll(async () => {
  await t?.stop();
});

const ENDED = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

/** A bastion, one network and the given VMs, running `steps`; each test brings its own workflow. */
function topology(vms: Record<string, unknown>[], steps: Record<string, unknown>[], bastion: Record<string, unknown> = {}) {
  return {
    name: 'agentless',
    bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion', ...bastion },
    networks: [{ name: 'private', cidr: '10.0.0.0/24' }],
    vms: vms.map((vm) => ({ network: 'private', image: 'debian-12', flavor: 'm1.small', ...vm })),
    workflow: { steps },
  };
}

/** The deployment's servers as the cloud's own API lists them. */
async function serverNames(deploymentId: string): Promise<string[]> {
  const api = await OsApi.connect(t.engine.keystoneUrl, t.token);
  const { servers } = await api.ok('compute', 'GET', `/servers/detail?name=^ctd-${deploymentId}-`);
  return (servers as { name: string }[]).map((s) => s.name).sort();
}

async function stdout(deploymentId: string, stepId: string) {
  const { lines } = await t.client.logs(deploymentId, { step: stepId });
  return lines.filter((l) => l.stream === 'stdout');
}

describe('Engine through the bastion: access', () => {
  it('refuses the engine before bastion-open and again after bastion-close, leaving no rule behind', async () => {
    expect(await probeBastion(t.bastionAddress)).toBe('refused');
    expect(await bastionRules(t.stateDir)).toEqual([]);

    const { deploymentId } = await t.client.submit(runDeployment([{ id: 'hold', command: 'sleep 4' }]));
    await t.waitFor(deploymentId, (d) => stepOf(d, 'hold').status === 'running' || ENDED.includes(d.status));
    // While the deployment runs, the same address gets as far as the SSH handshake.
    expect(await probeBastion(t.bastionAddress)).toBe('handshake');
    expect(await bastionRules(t.stateDir)).toEqual([expect.objectContaining({ deploymentId, cidr: '127.0.0.1/32' })]);

    const done = await t.waitForEnd(deploymentId);
    expect(done.status).toBe('SUCCEEDED');
    expect(stepOf(done, 'bastion-close').status).toBe('succeeded');
    expect(await probeBastion(t.bastionAddress)).toBe('refused');
    expect(await bastionRules(t.stateDir)).toEqual([]);
  });

  it('fails the ssh step with a clear error when the bastion no longer admits the deployment key', async () => {
    const body = topology(
      [{ name: 'web1' }],
      [
        { id: 'provision', action: 'provision' },
        { id: 'pause', action: 'run', command: 'sleep 15', dependsOn: ['provision'] },
        { id: 'hello', action: 'ssh', targets: ['web1'], files: [], command: 'echo reached', dependsOn: ['pause'] },
      ],
    );
    const { deploymentId } = await t.client.submit(body);
    try {
      const provisioned = await t.waitFor(deploymentId, (d) => !['waiting', 'running'].includes(stepOf(d, 'provision').status));
      expect(stepOf(provisioned, 'provision').status).toBe('succeeded');
      // The bastion's owner revokes the deployment's access item (the local cloud's equivalent of forwarding off).
      const api = await OsApi.connect(t.engine.keystoneUrl, t.token);
      const { servers } = await api.ok('compute', 'GET', '/servers/detail?name=^bastion$');
      await api.ok('compute', 'DELETE', `/servers/${servers[0].id}/metadata/ctd-access-${deploymentId}`);
      const done = await t.waitForEnd(deploymentId);

      const hello = stepOf(done, 'hello');
      expect(hello).toMatchObject({ status: 'failed', error: ErrorName.StepFailed });
      expect(hello.cause).toMatch(/web1/);
      expect(hello.cause).toMatch(/bastion/);
      expect(done.status).toBe('FAILED');
      expect(stepOf(done, 'bastion-close').status).toBe('succeeded');
      expect(await stdout(deploymentId, 'hello')).toEqual([]);
    } finally {
      await t.waitForEnd(deploymentId);
    }
  });

  it('refuses a bastion whose host key is not the pinned one, before any command runs on the VMs', async () => {
    const body = topology(
      [{ name: 'web1' }],
      [
        { id: 'provision', action: 'provision' },
        { id: 'mark', action: 'ssh', targets: ['web1'], files: [], command: 'touch ran-here', dependsOn: ['provision'] },
      ],
      { hostKey: strangerHostKey() },
    );
    const { deploymentId } = await t.client.submit(body);
    const done = await t.waitForEnd(deploymentId);

    const provision = stepOf(done, 'provision');
    expect(provision).toMatchObject({ status: 'failed', error: ErrorName.StepFailed, attempt: 1 });
    expect(provision.cause).toMatch(/host key of the bastion \S+ does not match the pinned key/);
    expect(stepOf(done, 'mark').status).toBe('skipped');
    expect(done.status).toBe('FAILED');
    expect(stepOf(done, 'bastion-close').status).toBe('succeeded');
    // The VM was created (the cloud lists it) but nothing ran in it.
    expect(await serverNames(deploymentId)).toEqual([`ctd-${deploymentId}-web1`]);
    const vmFiles = await listFiles(join(t.stateDir, 'cloud', 'ssh2', 'servers'));
    expect(vmFiles.length).toBeGreaterThan(0);
    expect(vmFiles.filter((p) => p.endsWith('ran-here'))).toEqual([]);
  });
});

describe('Engine through the bastion: commands on the VMs', () => {
  it('fails a step whose command exits non-zero on one VM, naming the host and the exit code', async () => {
    const body = topology(
      [{ name: 'web1' }, { name: 'web2' }],
      [
        { id: 'provision', action: 'provision' },
        { id: 'check', action: 'ssh', targets: ['web1', 'web2'], files: [], dependsOn: ['provision'], command: 'echo "ran on $HOSTNAME"; [ "$HOSTNAME" != web2 ] || exit 7' },
        { id: 'deprovision', action: 'deprovision', dependsOn: ['check'] },
      ],
    );
    const { deploymentId } = await t.client.submit(body);
    const done = await t.waitForEnd(deploymentId);

    const check = stepOf(done, 'check');
    expect(stepOf(done, 'provision').status, `${JSON.stringify(done.steps.map((s) => [s.stepId, s.status, s.error, s.cause]))}\n${t.logTail()}`).toBe('succeeded');
    expect(check).toMatchObject({ status: 'failed', error: ErrorName.StepFailed });
    expect(check.cause).toContain('command exited 7 on web2');
    expect(check.cause).not.toContain('web1');
    expect(stepOf(done, 'deprovision').status).toBe('skipped');
    expect(done).toMatchObject({ status: 'FAILED', error: ErrorName.StepFailed });
    const out = await stdout(deploymentId, 'check');
    expect(out).toContainEqual(expect.objectContaining({ host: 'web1', text: 'ran on web1' }));
    expect(out).toContainEqual(expect.objectContaining({ host: 'web2', text: 'ran on web2' }));
  });

  it('deploys hello-world end to end: both VMs answer, then no VM process is left', async () => {
    const body = await helloWorld();
    const steps = (body.workflow as { steps: { id: string; command?: string }[] }).steps;
    // The example's own command, plus the service's pid so the test can look for it afterwards.
    const start = steps.find((s) => s.id === 'start')!;
    start.command = `${start.command!.trim()}\necho "service pid $!"`;
    const { deploymentId } = await t.client.submit(body);
    const done = await t.waitForEnd(deploymentId, 120_000);
    expect(done.status, `${JSON.stringify(done.steps.map((s) => [s.stepId, s.status, s.cause]))}\n${t.logTail()}`).toBe('SUCCEEDED');

    const answers = (await stdout(deploymentId, 'check')).map((l) => [l.host, l.text]);
    expect(answers).toEqual(expect.arrayContaining([['web1', 'Hello World from web1'], ['web2', 'Hello World from web2']]));

    const pids = (await stdout(deploymentId, 'start')).flatMap((l) => /^service pid (\d+)$/.exec(l.text)?.slice(1) ?? []).map(Number);
    expect(pids).toHaveLength(2);
    for (const pid of pids) await expect.poll(() => processAlive(pid), { message: `service pid ${pid}`, timeout: 10_000 }).toBe(false);
    const vms = (stepOf(done, 'provision').output as { vms: { name: string; address: string }[] }).vms;
    expect(vms.map((v) => v.name).sort()).toEqual(['web1', 'web2']);
    // Deprovisioned: the cloud's API lists none of the deployment's servers.
    expect(await serverNames(deploymentId)).toEqual([]);
  });
});

describe('Engine through the bastion: the SSH key on disk', () => {
  it('never writes the deployment key outside the sandbox\'s private directory, and removes it and the secrets at the end', async () => {
    // A second early: the kernel stamps files from a coarse clock that can lag Date.now().
    const submittedAt = Date.now() - 1000;
    // The deployment holds before deprovision until the test has scanned at least once, so a
    // slow scan on a loaded machine still looks while the key is in use.
    const gate = join(await mkdtemp(join(tmpdir(), 'ctd-gate-')), 'open');
    onTestFinished(() => rm(dirname(gate), { recursive: true, force: true }));
    const body = await helloWorld();
    const steps = (body.workflow as { steps: Record<string, unknown>[] }).steps;
    steps.splice(steps.length - 1, 0, { id: 'hold', action: 'ssh', targets: ['web1'], files: [], dependsOn: ['check'], command: `while [ ! -e ${gate} ]; do sleep 0.2; done` });
    steps[steps.length - 1]!.dependsOn = ['hold'];
    const { deploymentId } = await t.client.submit(body);
    const key = await deploymentPrivateKey(t, deploymentId);
    expect(key).toContain(PRIVATE_KEY_MARKER);
    const needles = keyNeedles(key!);
    expect(needles.length).toBeGreaterThan(0);

    const sandboxes = join(t.stateDir, 'sandboxes');
    const insideSandbox = (p: string) => {
      const rel = relative(sandboxes, p);
      return !rel.startsWith('..') && rel.split(sep).length >= 2;
    };
    const leaks = new Set<string>();
    let markerFiles: string[] = [];
    const scan = async () => {
      for (const p of await filesContaining([tmpdir()], needles, { modifiedSince: submittedAt })) if (!insideSandbox(p)) leaks.add(p);
      markerFiles = await filesContaining([t.stateDir], [PRIVATE_KEY_MARKER]);
      // In the state dir the only OpenSSH private keys outside sandboxes are the local cloud's host keys.
      for (const p of markerFiles) if (!insideSandbox(p) && !/ssh_host_ed25519_key$/.test(p)) leaks.add(p);
    };
    // A scan counts as made while the deployment ran when the deployment had not yet ended after it.
    let scansWhileRunning = -1;
    let view: DeploymentView;
    do {
      await scan();
      scansWhileRunning += 1;
      if (scansWhileRunning >= 1) await writeFile(gate, '');
      view = await t.client.get(deploymentId);
    } while (!ENDED.includes(view.status));
    await scan();

    expect(view.status, `${JSON.stringify(view.steps.map((s) => [s.stepId, s.status, s.cause]))}\n${t.logTail()}`).toBe('SUCCEEDED');
    expect(scansWhileRunning).toBeGreaterThanOrEqual(1);
    // The scan does read the state dir: it sees the bastion's host key.
    expect(markerFiles.some((p) => p.includes(join('cloud', 'ssh2', 'servers')) && p.endsWith('ssh_host_ed25519_key'))).toBe(true);
    expect([...leaks]).toEqual([]);
    // Every task's directory is gone; what remains belongs to runners started ahead for future tasks, still empty.
    await expect
      .poll(async () => {
        const left = await readdir(sandboxes);
        const nonEmpty = await Promise.all(left.map(async (d) => (await readdir(join(sandboxes, d))).length > 0));
        return { count: left.length, nonEmpty: nonEmpty.filter(Boolean).length };
      }, { timeout: 10_000 })
      .toEqual({ count: t.engine.sandboxes.warmCount, nonEmpty: 0 });
    expect(await secretItems(t, deploymentId)).toEqual([]);
  }, 120_000);
});

describe('Engine through the bastion: the error table', () => {
  it('retries provision when the cloud answers 503 on VM creation, and still succeeds', async () => {
    await injectFault(t.engine.cloudUrl, {
      method: 'POST',
      pathPattern: '^/compute/v2\\.1/servers$',
      status: 503,
      times: 2,
      message: 'The backend server is unreachable',
    });
    const body = topology(
      [{ name: 'web1' }],
      [
        { id: 'provision', action: 'provision' },
        { id: 'hello', action: 'ssh', targets: ['web1'], files: [], command: 'echo "hello from $HOSTNAME"', dependsOn: ['provision'] },
        { id: 'deprovision', action: 'deprovision', dependsOn: ['hello'] },
      ],
    );
    const { deploymentId } = await t.client.submit(body);
    const done = await t.waitForEnd(deploymentId, 120_000);
    expect(done.status, `${JSON.stringify(done.steps.map((s) => [s.stepId, s.status, s.cause]))}\n${t.logTail()}`).toBe('SUCCEEDED');
    expect(stepOf(done, 'provision').attempt).toBeGreaterThanOrEqual(2);

    const { events } = await t.client.history(deploymentId);
    const failures = events
      .filter((e) => e.type === 'TaskFailed')
      .map((e) => (e as { taskFailedEventDetails?: { error?: string; cause?: string } }).taskFailedEventDetails);
    const unreachable = failures.filter((f) => f?.error === ErrorName.BackendUnreachable);
    expect(unreachable).toHaveLength(2);
    expect(unreachable[0]?.cause).toContain('creating server web1');
    expect(await stdout(deploymentId, 'hello')).toContainEqual(expect.objectContaining({ host: 'web1', text: 'hello from web1' }));
  });
});

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}


