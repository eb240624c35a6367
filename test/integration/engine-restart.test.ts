import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { PRIVATE_KEY_MARKER } from '../helpers/agentless.ts';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DynamoDBClient, GetItemCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TABLE_NAME } from '../../local/engine.ts';
import { startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * The user's path: `ctd local up` in one terminal, `ctd deploy --wait` in another; then the
 * engine dies (SIGKILL) mid-deployment and is started again on the same state.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CTD = join(ROOT, 'bin', 'ctd.js');
let stateDir: string;
let env: NodeJS.ProcessEnv;
let engineProcess: ChildProcess | undefined;
let restarted: TestEngine | undefined;
// The restarted engine must find its cloud where the first one left it: one loopback block for both.
const block = `127.${64 + Math.floor(Math.random() * 64)}.${Math.floor(Math.random() * 256)}.0/24`;

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

async function engineFile(): Promise<{ apiUrl: string; pid: number }> {
  for (let i = 0; i < 300; i++) {
    try {
      return JSON.parse(await readFile(join(stateDir, 'engine.json'), 'utf8')) as { apiUrl: string; pid: number };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error('ctd local up did not come up');
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'ctd-restart-'));
  env = {
    ...process.env,
    CTD_HOME: stateDir,
    CTD_LOCAL_LOOPBACK_BLOCK: block,
  };
  engineProcess = spawn(process.execPath, [CTD, 'local', 'up', '--port', '0'], { env, cwd: ROOT, stdio: 'ignore' });
  await engineFile();
});

afterAll(async () => {
  engineProcess?.kill('SIGKILL');
  await restarted?.stop();
  await rm(stateDir, { recursive: true, force: true });
});

describe('ctd local up + ctd deploy --wait', () => {
  let finishedId: string;
  let runningId: string;

  it('runs examples/run-steps.yaml to SUCCEEDED and shows the AWS-shaped history', async () => {
    const deployed = await ctd(['deploy', 'examples/run-steps.yaml', '--wait']);
    expect(deployed.stderr).toBe('');
    expect(deployed.code).toBe(0);
    expect(deployed.stdout).toMatch(/SUCCEEDED/);
    finishedId = /deployment (d-[0-9a-z]+) submitted/.exec(deployed.stdout)?.[1] ?? '';
    const history = await ctd(['history', finishedId]);
    expect(history.code).toBe(0);
    for (const type of ['ExecutionStarted', 'MapIterationStarted', 'TaskSubmitted', 'TaskSucceeded', 'ExecutionSucceeded']) {
      expect(history.stdout).toContain(type);
    }
  });

  it('after the engine dies mid-deployment and restarts: finished ones keep their history, the running one is cleaned up (bastion closed, secrets deleted) and failed', { timeout: 120_000 }, async () => {
    // run-steps.yaml with its first step held: the engine dies while that step runs, however fast the rest would be.
    const held = join(stateDir, 'run-steps-held.yaml');
    const example = await readFile(join(ROOT, 'examples', 'run-steps.yaml'), 'utf8');
    await writeFile(held, example.replace('sleep 0.3', 'sleep 60'));
    const submitted = await ctd(['deploy', held, '--json']);
    runningId = (JSON.parse(submitted.stdout) as { deploymentId: string }).deploymentId;
    let fetch: string | undefined;
    for (let i = 0; i < 300 && fetch !== 'running'; i++) {
      const status = JSON.parse((await ctd(['status', runningId, '--json'])).stdout) as { steps: { stepId: string; status: string }[] };
      fetch = status.steps.find((s) => s.stepId === 'fetch')?.status;
      if (fetch !== 'running') await new Promise((r) => setTimeout(r, 100));
    }
    expect(fetch).toBe('running');
    engineProcess!.kill('SIGKILL');
    await new Promise((r) => engineProcess!.once('close', r));
    engineProcess = undefined;
    // What the dead engine's sandboxes left: warm runners' dirs, and a key as an ansible step writes it.
    const left = await readdir(join(stateDir, 'sandboxes'));
    expect(left.length).toBeGreaterThan(0);
    await writeFile(join(stateDir, 'sandboxes', left[0]!, 'id_ed25519'), `-----${PRIVATE_KEY_MARKER}-----\n`, { mode: 0o600 });

    restarted = await startTestEngine({ stateDir, loopbackBlock: block });
    const now = await readdir(join(stateDir, 'sandboxes')).catch(() => [] as string[]);
    expect(now.filter((d) => left.includes(d))).toEqual([]);
    const client = await restarted.clientFor('default');
    const finished = await client.get(finishedId);
    expect(finished.status).toBe('SUCCEEDED');
    expect((await client.history(finishedId)).events.at(-1)?.type).toBe('ExecutionSucceeded');

    // The safety net hears the orphan at start and runs a cleanup-only execution: bastion-close, then DeleteSecrets.
    let orphan = await client.get(runningId);
    for (let i = 0; i < 600 && !['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(orphan.status); i++) {
      await new Promise((r) => setTimeout(r, 100));
      orphan = await client.get(runningId);
    }
    expect(orphan.status).toBe('FAILED');
    expect(orphan.cause).toContain('engine stopped while this execution was running');
    expect(orphan.steps.find((s) => s.stepId === 'bastion-close')?.status).toBe('succeeded');
    const ddb = new DynamoDBClient({ endpoint: restarted.engine.endpoints.dynamodb, region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
    for (const sk of ['SECRET#token', 'SECRET#sshkey']) {
      const item = await ddb.send(new GetItemCommand({ TableName: TABLE_NAME, Key: { pk: { S: `DEP#${runningId}` }, sk: { S: sk } } }));
      expect(item.Item, sk).toBeUndefined();
    }
  });
});
