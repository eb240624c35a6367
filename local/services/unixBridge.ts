import { connect, createServer, type Socket } from 'node:net';
import { chmod, rm } from 'node:fs/promises';

/**
 * Exposes a loopback TCP service on a unix socket. A sandbox in its own network namespace has
 * no route to the host's loopback, but a bind-mounted socket file crosses that boundary.
 */
export async function bridgeToUnixSocket(tcpUrl: string, socketPath: string): Promise<{ close(): Promise<void> }> {
  const target = new URL(tcpUrl);
  const host = target.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(target.port || (target.protocol === 'https:' ? 443 : 80));
  const open = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port, host);
    open.add(client).add(upstream);
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream).pipe(client);
  });
  // A socket file left by a crashed run would make listen fail with EADDRINUSE.
  await rm(socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  await chmod(socketPath, 0o600);
  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const socket of open) socket.destroy();
    await closed;
    await rm(socketPath, { force: true });
  };
  return { close: () => (closing ??= close()) };
}
