import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../core/api.ts';
import { OsApi } from '../helpers/openstackApi.ts';
import { groupAlive, runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * The first level pre-started while bastion-open runs (issue 12): the roots' sandboxes boot beside
 * bastion-open's, and run nothing until it succeeded. bastion-open is held (or failed) with the
 * local cloud's fault injection on the rule it adds; a root's user code calls a loopback server
 * (the call is the code running). Nothing depends on speed: the test waits on events.
 */

let t: TestEngine;
let api: OsApi;
let calls: Map<string, number>;
let server: Server;
let url: string;
beforeAll(async () => {
  calls = new Map();
  server = createServer((req, res) => {
    const name = decodeURIComponent(req.url?.slice(1) ?? '');
    if (!calls.has(name)) calls.set(name, Date.now());
    res.end('ok');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // A simulated Fargate start of ~2-2.5 s (× the time scale) for every sandbox, bastion-open's included.
  t = await startTestEngine({ timeScale: 0.1, sandboxStartLatency: { median: 20, p90: 25 }, prestart: { maxWaiting: 4 } });
  api = await OsApi.connect(t.engine.keystoneUrl, t.token);
});
afterEach(async () => {
  await fetch(`${t.engine.cloudUrl}/_admin/faults`, { method: 'DELETE' });
});
afterAll(async () => {
  await t?.stop();
  server?.close();
});

const call = (name: string) => `${process.execPath} -e 'fetch("${url}/${name}").then((r) => process.exit(r.ok ? 0 : 1))'`;
const step = (view: DeploymentView, id: string) => view.steps.find((s) => s.stepId === id);
const at = (iso: string | undefined) => (iso ? Date.parse(iso) : NaN);

/** Every add of a bastion rule answers `status` (`times` times): 503 is retried, 403 twice fails bastion-open. */
async function failRuleAdds(status: number, times: number): Promise<void> {
  const res = await fetch(`${t.engine.cloudUrl}/_admin/faults`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ method: 'POST', pathPattern: '^/network/v2\\.0/security-group-rules', status, times, message: 'injected: Neutron refuses' }),
  });
  expect(res.status).toBe(204);
}

/** Bastion rules of this deployment still in Neutron. */
async function rulesOf(deploymentId: string): Promise<string[]> {
  const { security_group_rules } = (await api.ok('network', 'GET', '/security-group-rules')) as { security_group_rules: { id: string; description: string | null }[] };
  return security_group_rules.filter((r) => (r.description ?? '').startsWith(`ctd:${deploymentId}:`)).map((r) => r.id);
}

describe('roots pre-started while bastion-open runs', () => {
  it('a root sandbox is up before bastion-open ended, and its user code runs only after bastion-open succeeded', async () => {
    // bastion-open's first attempt fails (retried after 10 s × 0.1 and one more start): it stays open-ended a while.
    await failRuleAdds(503, 1);
    const { deploymentId } = await t.client.submit(
      runDeployment([
        { id: 'root-a', command: call('root-a') },
        { id: 'root-b', command: call('root-b') },
        { id: 'after', command: 'true', dependsOn: ['root-a'] },
      ]),
    );
    const end = await t.waitForEnd(deploymentId, 120_000);
    expect(end.status, t.logTail()).toBe('SUCCEEDED');
    const open = step(end, 'bastion-open')!;
    const opened = at(open.endedAt);
    for (const id of ['root-a', 'root-b']) {
      const root = step(end, id)!;
      // Pre-started: the sandbox was up and waiting while bastion-open still ran (its cold start hidden)...
      expect(at(root.readyAt), `${id} ready before bastion-open ended`).toBeLessThan(opened);
      // ...but released, and its user code run, only once bastion-open had succeeded.
      expect(at(root.startedAt)).toBeGreaterThanOrEqual(opened);
      expect(calls.get(id)).toBeGreaterThanOrEqual(opened);
    }
  });

  it('bastion-open fails: FAILED with its error, the pre-started roots skipped and stopped before Cleanup, no rule open', async () => {
    // Every rule add is refused: bastion-open fails with Ctd.ProvisioningError after its one retry.
    await failRuleAdds(403, 20);
    const { deploymentId } = await t.client.submit(
      runDeployment([
        { id: 'f-root-a', command: call('f-root-a') },
        { id: 'f-root-b', command: call('f-root-b') },
      ]),
    );
    const ready = await t.waitFor(deploymentId, (d) => ['f-root-a', 'f-root-b'].every((id) => step(d, id)?.readyAt !== undefined));
    expect(step(ready, 'bastion-open')?.status, 'the roots are up while bastion-open has not succeeded').not.toBe('succeeded');
    const groups = ['f-root-a', 'f-root-b'].map((id) => t.engine.sandboxes.processGroups().get(id));
    for (const pgid of groups) expect(pgid !== undefined && groupAlive(pgid)).toBe(true);

    const end = await t.waitForEnd(deploymentId, 120_000);
    expect(end.status, t.logTail()).toBe('FAILED');
    expect(end.error).toBe('Ctd.ProvisioningError');
    expect(end.cause).toContain('bastion-open');
    const closeStarted = at(step(end, 'bastion-close')?.startedAt);
    for (const id of ['f-root-a', 'f-root-b']) {
      const root = step(end, id)!;
      expect(root.status).toBe('skipped');
      expect(root.cause).toMatch(/bastion access could not be opened \(step "bastion-open" failed/);
      // Skipped by bastion-open's failure itself, not by Cleanup (bastion-close's sandbox starts later).
      expect(at(root.endedAt)).toBeLessThan(closeStarted);
    }
    expect([...calls.keys()].filter((n) => n.startsWith('f-root'))).toEqual([]);
    for (const pgid of groups) await t.waitFor(deploymentId, () => !groupAlive(pgid!), 10_000);
    expect(t.logTail(400)).toMatch(/stopping \S+: skipped while waiting: not started: bastion access could not be opened/);
    expect(await rulesOf(deploymentId)).toEqual([]);
  });

  it('cancel while bastion-open runs with roots pre-started: CANCELLED, nothing left running, no rule open', async () => {
    // Keeps bastion-open retrying (each attempt one more start) while the test cancels.
    await failRuleAdds(503, 3);
    const { deploymentId } = await t.client.submit(runDeployment([{ id: 'c-root', command: call('c-root') }]));
    const ready = await t.waitFor(deploymentId, (d) => step(d, 'c-root')?.readyAt !== undefined);
    expect(step(ready, 'bastion-open')?.status).not.toBe('succeeded');
    const pgid = t.engine.sandboxes.processGroups().get('c-root')!;
    expect(groupAlive(pgid)).toBe(true);

    await t.client.cancel(deploymentId);
    const end = await t.waitForEnd(deploymentId, 120_000);
    expect(end.status, t.logTail()).toBe('CANCELLED');
    expect(step(end, 'c-root')?.status).toBe('cancelled');
    expect(end.steps.filter((s) => s.status === 'waiting' || s.status === 'running')).toEqual([]);
    expect(calls.has('c-root')).toBe(false);
    await t.waitFor(deploymentId, () => !groupAlive(pgid), 10_000);
    expect(await rulesOf(deploymentId)).toEqual([]);
  });
});
