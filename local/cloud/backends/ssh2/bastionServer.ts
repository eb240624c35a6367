import { connect } from 'node:net';
import type { Connection, TcpipRequestInfo, AcceptConnection, RejectConnection, ServerChannel } from 'ssh2';
import type { HostKey } from './hostKey.ts';
import { authenticateByKey } from './publicKeyAuth.ts';
import { SshListener } from './sshListener.ts';

/** What the bastion asks the cloud at each connection, login and forward. */
export interface BastionPolicy {
  /** The security group's allow-list: may this TCP source reach the SSH port at all? */
  admits(sourceAddress: string): boolean;
  /** Public keys that may log in (see Ssh2Backend for which ones). */
  loginKeys(): string[];
  forwardingEnabled(): boolean;
  /** Whether the holder of this key may be forwarded to address:port. */
  mayForward(key: Buffer, address: string, port: number): boolean;
}

export interface BastionServerOptions {
  address: string;
  port: number;
  user: string;
  hostKey: HostKey;
  policy: BastionPolicy;
}

type TcpipListener = (accept: AcceptConnection<ServerChannel>, reject: RejectConnection, info: TcpipRequestInfo) => void;

/**
 * The bastion: an SSH server that only forwards. A source no rule admits is dropped before the
 * handshake (a refused connection); sessions already open survive a rule's deletion, like a
 * stateful cloud security group. Forwarding off means no `direct-tcpip` handler is registered,
 * so ssh2 answers "administratively prohibited", as OpenSSH does with AllowTcpForwarding no.
 */
export class BastionServer {
  private listener: SshListener | undefined;
  private readonly clients = new Map<Connection, TcpipListener>();

  constructor(private readonly opts: BastionServerOptions) {}

  async start(): Promise<void> {
    this.listener = new SshListener(
      this.opts.hostKey.privateKey,
      (client) => this.serve(client),
      (address) => this.opts.policy.admits(address),
    );
    await this.listener.listen(this.opts.address, this.opts.port);
  }

  private serve(client: Connection): void {
    let key: Buffer | undefined;
    client.on('authentication', (ctx) => {
      if (ctx.username !== this.opts.user) return ctx.reject(['publickey']);
      key = authenticateByKey(ctx, this.opts.policy.loginKeys()) ?? key;
    });
    client.on('ready', () => {
      const onTcpip: TcpipListener = (accept, reject, info) => {
        if (!key || !this.opts.policy.mayForward(key, info.destIP, info.destPort)) return reject();
        const upstream = connect({ host: info.destIP, port: info.destPort, localAddress: this.opts.address });
        upstream.once('error', () => reject());
        upstream.once('connect', () => {
          const channel = accept();
          channel.on('error', () => upstream.destroy());
          upstream.on('error', () => channel.destroy());
          upstream.pipe(channel).pipe(upstream);
        });
      };
      this.clients.set(client, onTcpip);
      if (this.opts.policy.forwardingEnabled()) client.on('tcpip', onTcpip);
      client.on('session', (_accept, reject) => reject());
    });
    client.on('close', () => this.clients.delete(client));
  }

  /** Applies the forwarding switch to sessions already open too (sshd re-reads its config on SIGHUP). */
  refreshForwarding(): void {
    const on = this.opts.policy.forwardingEnabled();
    for (const [client, onTcpip] of this.clients) {
      client.off('tcpip', onTcpip);
      if (on) client.on('tcpip', onTcpip);
    }
  }

  async close(): Promise<void> {
    this.clients.clear();
    await this.listener?.close();
  }
}
