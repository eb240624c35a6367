import { createServer, type Server as NetServer, type Socket } from 'node:net';
import ssh2, { type Connection } from 'ssh2';
import { ConnectionGuard } from './connectionGuard.ts';

// ssh2 is CommonJS whose `Server` Node's ESM loader cannot see as a named export.
const SshServer = ssh2.Server;
type SshServer = InstanceType<typeof ssh2.Server>;

/**
 * An ssh2 server behind our own TCP listener: the listener sees each socket first (so the
 * bastion can refuse an address before any SSH byte is exchanged, as a firewall would) and
 * tracks sockets and SSH connections so `close()` tears everything down at once.
 */
export class SshListener {
  private readonly sockets = new Set<Socket>();
  private readonly net: NetServer;
  private readonly ssh: SshServer;

  constructor(
    hostKey: string,
    onClient: (client: Connection, socket: { remoteAddress: string; remotePort: number }, guard: ConnectionGuard) => void,
    /** Whether a TCP peer may even start a handshake; false destroys the socket. */
    admit: (remoteAddress: string) => boolean = () => true,
  ) {
    this.ssh = new SshServer({ hostKeys: [hostKey] });
    // ssh2 announces a client only once its version header arrived, in any order: pair it with
    // its socket by the peer's address and port.
    const pending = new Map<string, { remoteAddress: string; remotePort: number; socket: Socket }>();
    const keyOf = (ip: string | undefined, port: number | undefined) => `${ip ?? ''}|${port ?? 0}`;
    this.ssh.on('connection', (client, header) => {
      const key = keyOf(header.ip, header.port);
      const entry = pending.get(key);
      pending.delete(key);
      if (!entry) {
        client.on('error', () => undefined);
        client.end();
        return;
      }
      const { socket, ...info } = entry;
      const guard = new ConnectionGuard(socket, `from ${info.remoteAddress}:${info.remotePort}`);
      // A protocol error (a client gone mid-packet, a bad MAC) ends this connection, nothing else.
      client.on('error', () => guard.markClosed());
      client.on('close', () => guard.markClosed());
      guard.run('accepting the connection', () => onClient(client, info, guard));
    });
    this.net = createServer((socket) => {
      const remoteAddress = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
      if (!admit(remoteAddress)) {
        socket.destroy();
        return;
      }
      const key = keyOf(socket.remoteAddress, socket.remotePort);
      this.sockets.add(socket);
      socket.on('close', () => {
        this.sockets.delete(socket);
        pending.delete(key);
      });
      socket.on('error', () => undefined);
      pending.set(key, { remoteAddress, remotePort: socket.remotePort ?? 0, socket });
      try {
        this.ssh.injectSocket(socket);
      } catch (e) {
        pending.delete(key);
        console.error(`[local cloud] ssh handshake from ${remoteAddress} failed: ${e instanceof Error ? e.message : String(e)}`);
        socket.destroy();
      }
    });
  }

  listen(address: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.net.once('error', reject);
      this.net.listen(port, address, () => {
        this.net.off('error', reject);
        resolve();
      });
    });
  }

  /** Stops listening and drops every open session. */
  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    return new Promise((resolve) => this.net.close(() => resolve()));
  }
}
