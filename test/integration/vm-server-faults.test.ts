import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateSshKeyPair } from '../../core/crypto/deploymentKey.ts';
import { loadOrCreateHostKey } from '../../local/cloud/backends/ssh2/hostKey.ts';
import { ProcessGroups } from '../../local/cloud/backends/ssh2/processes.ts';
import { VmServer } from '../../local/cloud/backends/ssh2/vmServer.ts';
import { pickLoopbackBlock } from '../../local/cloud/loopbackBlock.ts';

// A real OpenSSH client with compression against one ssh2 VM: a client that vanishes while its
// command runs must cost only that connection, never the process hosting the local cloud.
const key = generateSshKeyPair('ctd-test-leaks10');
let dir: string;
let address: string;
let server: VmServer;
let processes: ProcessGroups;
const port = 2222;

const sshArgs = (command: string) => [
  '-F', '/dev/null', '-i', join(dir, 'id'), '-p', String(port),
  '-o', 'Compression=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
  '-o', 'BatchMode=yes', '-o', 'LogLevel=ERROR', `vm@${address}`, command,
];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ctd-leaks10-vm-'));
  const home = join(dir, 'home');
  await mkdir(join(home, '.ssh'), { recursive: true });
  await mkdir(join(dir, 'tmp'));
  await writeFile(join(home, '.ssh', 'authorized_keys'), `${key.publicKey}\n`);
  await writeFile(join(dir, 'id'), key.privateKey, { mode: 0o600 });
  address = (await pickLoopbackBlock(port)).listenCidr.replace(/\.128\/25$/, '.130');
  processes = new ProcessGroups();
  server = new VmServer({
    name: 'vm1', address, port, home, tmp: join(dir, 'tmp'), authorizedKeysPath: join(home, '.ssh', 'authorized_keys'),
    hostKey: await loadOrCreateHostKey(join(dir, 'host_key')), processes,
  });
  await server.start();
});

afterAll(async () => {
  processes?.killAll();
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('ssh2 VM server faults', () => {
  it('a compressed OpenSSH session killed mid-command leaves the server answering', async () => {
    const errors: unknown[] = [];
    const onError = (e: unknown) => errors.push(e);
    process.on('uncaughtException', onError);
    try {
      for (let i = 0; i < 3; i++) {
        const client = spawn('ssh', sshArgs('sleep 2; echo done'), { stdio: 'ignore' });
        await new Promise((r) => setTimeout(r, 700));
        client.kill('SIGKILL');
        await new Promise((r) => client.once('exit', r));
      }
      // The remote commands outlive their clients and end after the clients are gone.
      await new Promise((r) => setTimeout(r, 3000));
      // Async: the server lives in this process, a synchronous client would block it.
      const after = await promisify(execFile)('ssh', sshArgs('echo alive'), { encoding: 'utf8', timeout: 20_000 });
      expect(after.stdout.trim()).toBe('alive');
      expect(errors).toEqual([]);
    } finally {
      process.off('uncaughtException', onError);
    }
  }, 40_000);

  it("gives a VM command the VM's own temporary directory, not the host's /tmp", async () => {
    // What Ansible unpacks there and a killed command leaves behind (its AnsiballZ payload) goes with the VM's directory.
    const { stdout } = await promisify(execFile)('ssh', sshArgs(`python3 -c 'import tempfile; print(tempfile.mkdtemp(prefix="ansible_"))'`), { encoding: 'utf8', timeout: 20_000 });
    expect(stdout.trim().startsWith(`${join(dir, 'tmp')}/ansible_`)).toBe(true);
  }, 30_000);
});
