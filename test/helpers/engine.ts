import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CtdClient } from '../../cli/client.ts';
import type { DeploymentView } from '../../core/api.ts';
import { startLocalEngine, type LocalEngine, type LocalEngineOptions } from '../../local/engine.ts';

/**
 * A whole local engine for one test file: its own state dir and its own loopback addresses,
 * so files running side by side never share a port or a bastion.
 */
export interface TestEngine {
  engine: LocalEngine;
  client: CtdClient;
  token: string;
  tenantId: string;
  /** The floating IP of the default tenant's bastion (from the cloud; documents no longer name it). */
  bastionAddress: string;
  stateDir: string;
  /** Polls until the deployment ends (or the deadline passes) and returns its final view. */
  waitForEnd(deploymentId: string, timeoutMs?: number): Promise<DeploymentView>;
  waitFor(deploymentId: string, predicate: (d: DeploymentView) => boolean, timeoutMs?: number): Promise<DeploymentView>;
  clientFor(tenantId: string): Promise<CtdClient>;
  /** The engine's last log lines, for assertion messages: a failure in CI says why. */
  logTail(lines?: number): string;
  /** Stops the engine; `keepState` leaves the state dir for a restart test. */
  stop(opts?: { keepState?: boolean }): Promise<void>;
}

export async function startTestEngine(opts: Partial<LocalEngineOptions> & { stateDir?: string } = {}): Promise<TestEngine> {
  const stateDir = opts.stateDir ?? (await mkdtemp(join(tmpdir(), 'ctd-test-')));
  const lines: string[] = [];
  const engine = await startLocalEngine({
    apiPort: 0,
    log: (l) => {
      lines.push(l);
      if (process.env.CTD_TEST_LOG) process.stderr.write(`${l}\n`);
    },
    ...opts,
    stateDir,
    cloudFaultInjection: opts.cloudFaultInjection ?? true,
  });
  const clientFor = async (tenantId: string) => {
    const token = await engine.mintToken(tenantId);
    return new CtdClient({ endpoint: engine.apiUrl, token: { get: async () => token } });
  };
  const tenantId = 'tenant-a';
  const token = await engine.mintToken(tenantId);
  const client = new CtdClient({ endpoint: engine.apiUrl, token: { get: async () => token } });
  const waitFor = async (id: string, predicate: (d: DeploymentView) => boolean, timeoutMs = 90_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const view = await client.get(id);
      if (predicate(view)) return view;
      if (Date.now() > deadline) throw new Error(`deployment ${id} did not reach the expected state; last: ${JSON.stringify(view.steps.map((s) => [s.stepId, s.status]))} ${view.status}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  return {
    engine,
    client,
    token,
    tenantId,
    bastionAddress: (await engine.bastionOf(tenantId)).address,
    stateDir,
    waitFor,
    waitForEnd: (id, timeoutMs) => waitFor(id, (d) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(d.status), timeoutMs),
    clientFor,
    logTail: (n = 40) => lines.slice(-n).join('\n'),
    stop: async ({ keepState = false } = {}) => {
      await engine.stop();
      if (!keepState) await rm(stateDir, { recursive: true, force: true });
    },
  };
}

export { runDeployment } from './deployments.ts';

/** True while any process of the group lives (the sandbox and whatever it started). */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * True while the process runs. A zombie counts as gone: PID 1 on these machines does not reap
 * orphans, so a killed detached process can linger as a zombie that holds nothing.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}
