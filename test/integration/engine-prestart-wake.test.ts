import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeploymentView } from '../../core/api.ts';
import { runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * A released pre-started sandbox is woken (issue 12): the runners' release poll is set to an hour here
 * (6 minutes at this time scale), so a chain whose sandboxes wait for their release completes only
 * because each release wakes its sandbox; without the wake it hangs until the test times out. The steps
 * call a gate the test opens once the next sandboxes have registered: nothing depends on speed.
 */

const HOUR_MS = 3_600_000;
let t: TestEngine;
let gate: { server: Server; url: string; calls: string[]; open(name: string): void };

beforeAll(async () => {
  const held = new Map<string, () => void>();
  const opened = new Set<string>();
  const calls: string[] = [];
  const server = createServer((req, res) => {
    const name = decodeURIComponent(req.url?.slice(1) ?? '');
    calls.push(name);
    if (opened.has(name)) res.end('ok');
    else held.set(name, () => res.end('ok'));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  gate = {
    server,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    calls,
    open: (name) => {
      opened.add(name);
      held.get(name)?.();
    },
  };
  t = await startTestEngine({ timeScale: 0.1, prestart: { maxWaiting: 4 }, releasePollMs: { first: HOUR_MS, max: HOUR_MS } });
});
afterAll(async () => {
  await t?.stop();
  gate?.server.close();
});

const call = (name: string) =>
  `${process.execPath} -e 'fetch("${gate.url}/${name}").then((r) => r.text()).then((a) => process.exit(a === "ok" ? 0 : 1))'`;
const step = (view: DeploymentView, id: string) => view.steps.find((s) => s.stepId === id);

describe('a released pre-started sandbox is woken', () => {
  it('runs a chain of pre-started steps though the runners hardly poll', async () => {
    const { deploymentId } = await t.client.submit(
      runDeployment([
        { id: 'one', command: call('one') },
        { id: 'two', command: call('two'), dependsOn: ['one'] },
        { id: 'three', command: call('three'), dependsOn: ['two'] },
      ]),
    );
    // `one` runs its user code; `two` and `three` have registered (readyAt) and sleep in their poll.
    const waiting = await t.waitFor(deploymentId, (d) => gate.calls.includes('one') && step(d, 'two')?.readyAt !== undefined && step(d, 'three')?.readyAt !== undefined);
    expect([step(waiting, 'two')?.status, step(waiting, 'three')?.status]).toEqual(['waiting', 'waiting']);

    gate.open('one');
    await t.waitFor(deploymentId, () => gate.calls.includes('two'));
    gate.open('two');
    await t.waitFor(deploymentId, () => gate.calls.includes('three'));
    gate.open('three');
    const end = await t.waitForEnd(deploymentId);
    expect(end.status, t.logTail()).toBe('SUCCEEDED');
    for (const id of ['two', 'three']) {
      const s = step(end, id)!;
      // Up before its release, so only a wake could have shown it the release.
      expect(Date.parse(s.readyAt!), id).toBeLessThan(Date.parse(s.startedAt!));
    }
  });
});
