import { mulberry32 } from '../../bench/random.ts';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { OpenStackDriver } from '../../adapters/openstack/index.ts';
import { CtdClient } from '../../cli/client.ts';
import { mintToken } from '../../cli/config.ts';
import { Ssh2Hypervisor } from '../../local/cloud/backends/ssh2/index.ts';
import { pickLoopbackBlock } from '../../local/cloud/loopbackBlock.ts';
import { startLocalCloud } from '../../local/cloud/server.ts';
import { OsApi } from '../helpers/openstackApi.ts';
import { runDeployment, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * Issue 10 item 1: a cancel (or a SIGKILL of the engine) at a random moment 0–1.5 s after submit,
 * i.e. during bastion-open, must leave no bastion rule open. Checked from the cloud's API: the
 * Neutron list of security-group rules. The seed is printed; CTD_TEST_SEED replays a run.
 */
const seed = Number(process.env.CTD_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
console.log(`bastion-open-cancel seed: ${seed} (replay with CTD_TEST_SEED=${seed})`);
const random = mulberry32(seed);
const ENDED = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

/** Bastion rules this engine made for a deployment (all of them when no id), as Neutron lists them. */
async function engineRules(api: OsApi, deploymentId?: string): Promise<string[]> {
  const { security_group_rules } = (await api.ok('network', 'GET', '/security-group-rules')) as { security_group_rules: { id: string; description: string | null }[] };
  return security_group_rules
    .filter((r) => (r.description ?? '').startsWith(deploymentId ? `ctd:${deploymentId}:` : 'ctd:') && (r.description ?? '').endsWith(':bastion'))
    .map((r) => `${r.id} ${r.description}`);
}

async function waitEnded(client: CtdClient, id: string, ms = 60_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const view = await client.get(id);
    if (ENDED.includes(view.status)) return view.status;
    if (Date.now() > deadline) throw new Error(`${id} still ${view.status}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('cancel during bastion-open', () => {
  let t: TestEngine | undefined;
  afterAll(async () => {
    await t?.stop();
  });

  it('leaves 0 rules open over 15 cancels at uniformly random moments 0–1.5 s after submit', async () => {
    t = await startTestEngine({ timeScale: 0.2 });
    const api = await OsApi.connect(t.engine.keystoneUrl, t.token);
    const leaks: string[] = [];
    for (let run = 0; run < 15; run++) {
      const delayMs = Math.floor(random() * 1500);
      const { deploymentId } = await t.client.submit(runDeployment([{ id: 'work', command: 'sleep 5' }]));
      await new Promise((r) => setTimeout(r, delayMs));
      await t.client.cancel(deploymentId).catch(() => undefined);
      const status = await waitEnded(t.client, deploymentId);
      const left = await engineRules(api, deploymentId);
      if (left.length > 0) leaks.push(`run ${run} (cancel after ${delayMs} ms, ${status}): ${left.join(', ')}`);
    }
    expect(leaks, `seed ${seed}`).toEqual([]);
    expect(await engineRules(api), `seed ${seed}`).toEqual([]);
  }, 300_000);
});

describe('SIGKILL during bastion-open', () => {
  const ROOT = fileURLToPath(new URL('../..', import.meta.url));
  const CTD = join(ROOT, 'bin', 'ctd.js');
  const block = `127.${64 + Math.floor(Math.random() * 64)}.${Math.floor(Math.random() * 256)}.0/24`;
  let stateDir: string;
  let engine: ChildProcess | undefined;

  async function up(): Promise<{ client: CtdClient; api: OsApi }> {
    await rm(join(stateDir, 'engine.json'), { force: true });
    engine = spawn(process.execPath, [CTD, 'local', 'up', '--port', '0'], { env: { ...process.env, CTD_HOME: stateDir, CTD_LOCAL_LOOPBACK_BLOCK: block }, cwd: ROOT, stdio: 'ignore' });
    for (let i = 0; i < 600; i++) {
      const text = await readFile(join(stateDir, 'engine.json'), 'utf8').catch(() => undefined);
      if (text) {
        const { apiUrl, cloudUrl } = JSON.parse(text) as { apiUrl: string; cloudUrl: string };
        const token = await mintToken(cloudUrl, 'default');
        return { client: new CtdClient({ endpoint: apiUrl, token: { get: async () => token } }), api: await OsApi.connect(`${cloudUrl}/identity/v3`, token) };
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('ctd local up did not come up');
  }

  afterAll(async () => {
    engine?.kill('SIGKILL');
    if (stateDir) await rm(stateDir, { recursive: true, force: true });
  });

  it('leaves 0 rules open over 5 SIGKILLs at uniformly random moments 0–1.5 s after submit, once restarted', async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'ctd-leaks10-kill-'));
    let { client, api } = await up();
    const leaks: string[] = [];
    for (let run = 0; run < 5; run++) {
      const delayMs = Math.floor(random() * 1500);
      const { deploymentId } = await client.submit(runDeployment([{ id: 'work', command: 'sleep 5' }]));
      await new Promise((r) => setTimeout(r, delayMs));
      const dying = engine!;
      dying.kill('SIGKILL');
      await new Promise((r) => dying.once('close', r));
      ({ client, api } = await up());
      const status = await waitEnded(client, deploymentId);
      const left = await engineRules(api, deploymentId);
      if (left.length > 0) leaks.push(`run ${run} (SIGKILL after ${delayMs} ms, ${status}): ${left.join(', ')}`);
    }
    expect(leaks, `seed ${seed}`).toEqual([]);
    expect(await engineRules(api), `seed ${seed}`).toEqual([]);
  }, 400_000);
});

// The window the random cancels above rarely hit: the rule exists in Neutron, the sandbox died
// before recording it. bastion-close, with nothing recorded, must still find it by its description.
describe('a bastion rule created but never recorded', () => {
  it('is deleted by bastion-close from its description alone', async () => {
    const stateDir = await mkdtemp(join(tmpdir(), 'ctd-leaks10-unrecorded-'));
    const block = await pickLoopbackBlock();
    const cloud = await startLocalCloud({ stateDir, hypervisor: new Ssh2Hypervisor({ stateDir, listenCidr: block.listenCidr }), floatingCidr: block.floatingCidr });
    try {
      const token = await cloud.mintToken('t-unrecorded');
      const api = await OsApi.connect(cloud.keystoneUrl, token);
      const driver = new OpenStackDriver({ keystoneUrl: cloud.keystoneUrl, egressCidrs: [await cloud.egressAddress()], pollIntervalMs: 50 });
      const deploymentId = 'd-unrecorded1';
      const killed = {
        token,
        deploymentId,
        record: async () => {
          throw new Error('the sandbox was stopped');
        },
        forget: async () => undefined,
      };
      await expect(driver.openBastionRule(killed, { securityGroup: 'bastion', cidr: `${await cloud.egressAddress()}/32`, port: 2222 })).rejects.toThrow('the sandbox was stopped');
      expect(await engineRules(api, deploymentId)).toHaveLength(1);
      await driver.closeBastionRules({ ...killed, record: async () => undefined }, { securityGroup: 'bastion', server: 'bastion', recorded: [] });
      expect(await engineRules(api, deploymentId)).toEqual([]);
    } finally {
      await cloud.close();
      await rm(stateDir, { recursive: true, force: true });
    }
  });
});
