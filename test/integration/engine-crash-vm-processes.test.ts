import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processAlive, startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * Issue 10 item 13, checked from outside: `ctd local up` runs an ssh step `sleep 300.N` on a
 * local (ssh2) VM, the engine process is SIGKILLed, a new engine starts on the same state; then
 * the process table holds no such sleep.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CTD = join(ROOT, 'bin', 'ctd.js');
const block = `127.${64 + Math.floor(Math.random() * 64)}.${Math.floor(Math.random() * 256)}.0/24`;
const marker = `300.${Math.floor(Math.random() * 1e6)}`;
let stateDir: string;
let env: NodeJS.ProcessEnv;
let engineProcess: ChildProcess | undefined;
let restarted: TestEngine | undefined;

function ctd(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CTD, ...args], { env, cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** Live pids whose command line is exactly `sleep <marker>`. */
async function sleepers(): Promise<number[]> {
  const wanted = `sleep\0${marker}\0`;
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline === wanted && processAlive(Number(entry))) pids.push(Number(entry));
  }
  return pids;
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'ctd-leaks10-crash-'));
  env = { ...process.env, CTD_HOME: stateDir, CTD_LOCAL_LOOPBACK_BLOCK: block };
  engineProcess = spawn(process.execPath, [CTD, 'local', 'up', '--port', '0'], { env, cwd: ROOT, stdio: 'ignore' });
  for (let i = 0; i < 300; i++) {
    if (await readFile(join(stateDir, 'engine.json'), 'utf8').catch(() => undefined)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('ctd local up did not come up');
});

afterAll(async () => {
  engineProcess?.kill('SIGKILL');
  await restarted?.stop();
  for (const pid of await sleepers()) process.kill(pid, 'SIGKILL');
  await rm(stateDir, { recursive: true, force: true });
});

describe('local VM processes and an engine crash', () => {
  it('a VM command still running when the engine is SIGKILLed is gone once the engine starts again', async () => {
    const file = join(stateDir, 'crash.yaml');
    await writeFile(
      file,
      [
        'name: crash',
        'bastion: { server: bastion, securityGroup: bastion, user: ctd }',
        'networks: [{ name: private, cidr: 10.0.0.0/24 }]',
        'vms: [{ name: vm1, network: private, image: debian-12, flavor: m1.small }]',
        'workflow:',
        '  steps:',
        '    - { id: provision, action: provision }',
        `    - { id: hold, action: ssh, dependsOn: [provision], targets: [vm1], command: "sleep ${marker}" }`,
        '',
      ].join('\n'),
    );
    const submitted = await ctd(['deploy', file, '--json']);
    expect(submitted.stderr).toBe('');
    await expect.poll(sleepers, { timeout: 90_000, interval: 250 }).toHaveLength(1);

    engineProcess!.kill('SIGKILL');
    await new Promise((r) => engineProcess!.once('close', r));
    engineProcess = undefined;

    restarted = await startTestEngine({ stateDir, loopbackBlock: block });
    await expect.poll(sleepers, { timeout: 10_000, interval: 250 }).toEqual([]);
  }, 180_000);
});
