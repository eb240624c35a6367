import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ScanCommand } from '@aws-sdk/client-dynamodb';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import { TABLE_NAME } from '../../local/engine.ts';
import { localDynamoDbClient, startLocalDynamoDb } from '../../local/services/dynamodb.ts';

/** `npm run demo` as a user runs it: a child process, its output, its exit code, what it leaves behind. */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let stateDir: string | undefined;
afterAll(async () => {
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
});

/**
 * Processes the demo started: their command line or working directory is under its state dir
 * (the VMs' services run in their VM's home there). Other test files' processes never are.
 */
async function leftovers(stateDir: string): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '');
    if (/State:\s+Z/.test(status)) continue; // a zombie holds nothing (PID 1 here does not reap orphans)
    if (cmdline.includes(stateDir) || cwd.startsWith(stateDir)) found.push(`${pid}: ${cmdline.replaceAll('\0', ' ')}`);
  }
  return found;
}

describe('npm run demo', () => {
  it('deploys hello-world, both VMs answer, and it leaves no process and no secret behind', async () => {
    stateDir = await mkdtemp(join(tmpdir(), 'ctd-demo-test-'));
    // A user's shell, not vitest's: without the switch vitest.config.ts sets to quiet the AWS SDK.
    const env = { ...process.env };
    delete env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED;
    const child = spawn(process.execPath, ['--import', 'tsx', 'scripts/demo.ts', '--state', stateDir], { cwd: ROOT, env });
    // A timed-out test must not leave the demo running on a state dir that afterAll removes (its spawner takes the sandboxes along).
    onTestFinished(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));

    expect(output).toContain('web1: Hello World from web1');
    expect(output).toContain('web2: Hello World from web2');
    expect(output).toContain('SUCCEEDED');
    expect(code, output).toBe(0);
    // Nothing but the demo's own story: no runtime warning opens it.
    expect(output).not.toMatch(/Warning/);
    // The engine's metrics (EMF) and JSON log lines go to the engine's log, not the demo's story.
    expect(output).not.toContain('"_aws"');
    expect(output).not.toContain('"correlation_id"');
    expect(await leftovers(stateDir)).toEqual([]);
    expect(spawnSync('sh', ['-c', `ls ${stateDir}/sandboxes 2>/dev/null | wc -l`], { encoding: 'utf8' }).stdout.trim()).toBe('0');

    const dynamo = await startLocalDynamoDb({ stateDir, tableName: TABLE_NAME, port: 0, sweepIntervalSeconds: 0 });
    try {
      const scan = await localDynamoDbClient(dynamo.url).send(new ScanCommand({ TableName: TABLE_NAME }));
      const keys = (scan.Items ?? []).map((i) => i.sk?.S ?? '');
      expect(keys).toContain('META');
      expect(keys.filter((k) => k.startsWith('SECRET#'))).toEqual([]);
    } finally {
      await dynamo.close();
    }
  });
});
