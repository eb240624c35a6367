import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestEngine, type TestEngine } from '../helpers/engine.ts';

/**
 * Issue 10 item 12: binary files from `files/` go through the CLI, the API, the store and SFTP
 * to a VM byte-exact; a body that is not UTF-8 is refused with a 400 naming the problem.
 */
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CTD = join(ROOT, 'bin', 'ctd.js');
let t: TestEngine;
let dir: string;

function ctd(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CTD, ...args], { env: { ...process.env, CTD_HOME: t.stateDir }, cwd: ROOT });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  t = await startTestEngine();
  dir = await mkdtemp(join(tmpdir(), 'ctd-leaks10-binary-'));
});
afterAll(async () => {
  await t?.stop();
  await rm(dir, { recursive: true, force: true });
});

describe('binary bundle files', () => {
  it('a random binary file and a .tar.gz pushed through the CLI arrive on the VM with the same sha256', async () => {
    const seed = randomBytes(4).readUInt32BE();
    const blob = Buffer.concat([Buffer.from([0xff, 0xfe, 0x00, 0xc3]), randomBytes(20_000 + (seed % 10_000))]);
    await mkdir(join(dir, 'files', 'src'), { recursive: true });
    await writeFile(join(dir, 'files', 'blob.bin'), blob);
    await writeFile(join(dir, 'files', 'src', 'hello.txt'), 'héllo ✓\n');
    execFileSync('tar', ['czf', join(dir, 'files', 'app.tar.gz'), '-C', join(dir, 'files'), 'src']);
    const tarball = await readFile(join(dir, 'files', 'app.tar.gz'));
    await writeFile(
      join(dir, 'deployment.yaml'),
      [
        'name: binary',
        'bastion: { server: bastion, securityGroup: bastion, user: ctd }',
        'networks: [{ name: private, cidr: 10.0.0.0/24 }]',
        'vms: [{ name: vm1, network: private, image: debian-12, flavor: m1.small }]',
        'workflow:',
        '  steps:',
        '    - { id: provision, action: provision }',
        '    - { id: hash, action: ssh, dependsOn: [provision], targets: [vm1], command: "sha256sum blob.bin app.tar.gz src/hello.txt" }',
        '    - { id: local, action: run, command: "sha256sum blob.bin app.tar.gz" }',
        '',
      ].join('\n'),
    );
    const deployed = await ctd(['deploy', join(dir, 'deployment.yaml'), '--json']);
    expect(deployed.stderr, `seed ${seed}`).toBe('');
    const { deploymentId } = JSON.parse(deployed.stdout) as { deploymentId: string };
    // The CLI mints its token for tenant "default".
    const client = await t.clientFor('default');
    const done = await client.get(deploymentId).then(async () => {
      for (;;) {
        const view = await client.get(deploymentId);
        if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(view.status)) return view;
        await new Promise((r) => setTimeout(r, 300));
      }
    });
    expect(done.status, t.logTail()).toBe('SUCCEEDED');
    const text = (await client.logs(deploymentId)).lines.map((l) => `${l.stepId} ${l.text}`).join('\n');
    for (const step of ['hash', 'local']) {
      expect(text, `${step}, seed ${seed}`).toContain(`${step} ${sha256(blob)}  blob.bin`);
      expect(text, `${step}, seed ${seed}`).toContain(`${step} ${sha256(tarball)}  app.tar.gz`);
    }
    expect(text).toContain(`hash ${sha256(Buffer.from('héllo ✓\n'))}  src/hello.txt`);
  }, 180_000);

  it('refuses a body that is not UTF-8 with a 400 naming it, and stores nothing', async () => {
    const before = (await t.client.list()).items.length;
    const doc = JSON.stringify({ name: 'bad', bastion: { server: 'bastion', user: 'ctd', securityGroup: 'bastion' }, workflow: { steps: [{ id: 'a', action: 'run', command: 'echo XX' }] } });
    const [head, tail] = doc.split('XX') as [string, string];
    const body = Buffer.concat([Buffer.from(head), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from(tail)]);
    const res = await fetch(`${t.engine.apiUrl}/deployments`, { method: 'POST', headers: { authorization: `Bearer ${t.token}`, 'content-type': 'application/json' }, body });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { message: string }).message).toMatch(/body: not valid UTF-8 \(first bad byte at offset \d+\)/);
    expect((await t.client.list()).items.length).toBe(before);
  });
});
