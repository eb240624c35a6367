import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { bridgeToUnixSocket } from '../../../services/unixBridge.ts';
import { exited } from './sshd.ts';

/**
 * The namespace side of a loopback port: listens on 127.0.0.1:PORT inside the namespace and
 * relays each connection to a unix socket, which the root-namespace side relays to the real
 * 127.0.0.1:PORT. A unix socket is a file, so it crosses the network-namespace boundary
 * without giving the namespace any route out. The forwarder exits when its stdin closes,
 * so it cannot outlive the process that started it.
 */
const FORWARDER = `
const net = require('node:net');
const [port, socketPath] = process.argv.slice(1);
const server = net.createServer((client) => {
  const upstream = net.connect(socketPath);
  const drop = () => { client.destroy(); upstream.destroy(); };
  client.on('error', drop).on('close', drop);
  upstream.on('error', drop).on('close', drop);
  client.pipe(upstream).pipe(client);
});
server.on('error', (e) => { process.stderr.write(String(e) + '\\n'); process.exit(1); });
server.listen(Number(port), '127.0.0.1', () => process.stdout.write('ready\\n'));
process.stdin.on('end', () => process.exit(0)).resume();
`;

export interface LoopbackPort {
  port: number;
  close(): Promise<void>;
}

export async function exposeLoopbackPort(ns: string, port: number, socketDir: string): Promise<LoopbackPort> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`invalid port ${port}`);
  await mkdir(socketDir, { recursive: true, mode: 0o700 });
  const socketPath = join(socketDir, `${port}.sock`);
  const bridge = await bridgeToUnixSocket(`http://127.0.0.1:${port}`, socketPath);
  let child: ChildProcess;
  try {
    child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', FORWARDER, String(port), socketPath], {
      stdio: ['pipe', 'pipe', 'pipe'],
      // A clean environment: an inherited NODE_OPTIONS loader (tsx) would slow every start.
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
    });
    await new Promise<void>((resolve, reject) => {
      let stderr = '';
      child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.stdout?.setEncoding('utf8').on('data', (d: string) => {
        if (d.includes('ready')) resolve();
      });
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`loopback forwarder for port ${port} exited ${code}: ${stderr.trim()}`)));
    });
  } catch (e) {
    await bridge.close();
    throw e;
  }
  return {
    port,
    close: async () => {
      child.stdin?.end();
      child.kill('SIGTERM');
      await exited(child);
      await bridge.close();
    },
  };
}
