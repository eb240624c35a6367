import { createServer, type Server as NetServer, type Socket } from 'node:net';
import ssh2, { type Connection } from 'ssh2';

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
    onClient: (client: Connection, socket: { remoteAddress: string; remotePort: number }) => void,
    /** Whether a TCP peer may even start a handshake; false destroys the socket. */
    admit: (remoteAddress: string) => boolean = () => true,
  ) {
    this.ssh = new SshServer({ hostKeys: [hostKey] });
    const pending: { remoteAddress: string; remotePort: number }[] = [];
    this.ssh.on('connection', (client) => {
      const info = pending.shift() ?? { remoteAddress: '', remotePort: 0 };
      client.on('error', () => undefined);
      onClient(client, info);
    });
    this.net = createServer((socket) => {
      const remoteAddress = (socket.remoteAddress ?? '').replace(/^::ffff:/, '');
      if (!admit(remoteAddress)) {
        socket.destroy();
        return;
      }
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      // injectSocket emits 'connection' synchronously, so the queue pairs socket and client.
      pending.push({ remoteAddress, remotePort: socket.remotePort ?? 0 });
      this.ssh.injectSocket(socket);
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
