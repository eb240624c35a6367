import { connect } from 'node:net';
import type { Connection } from 'ssh2';
import type { ConnectionGuard } from './connectionGuard.ts';
import type { HostKey } from './hostKey.ts';
import { authenticateByKey } from './publicKeyAuth.ts';
import { SshListener } from './sshListener.ts';

/** What the bastion asks its hypervisor at each connection, login and forward. */
export interface BastionPolicy {
  /** The security group's ingress rules: may this TCP source reach the SSH port at all? */
  admits(sourceAddress: string): boolean;
  /** Public key lines that may log in now. */
  loginKeys(): string[];
  /** Where a forward to `address:port` for this key goes, or undefined when the key may not go there. */
  route(key: Buffer, address: string, port: number): { host: string; port: number } | undefined;
}

export interface BastionServerOptions {
  address: string;
  port: number;
  user: string;
  hostKey: HostKey;
  policy: BastionPolicy;
}

/**
 * A bastion: an SSH server that only forwards. A source no rule admits is dropped before the
 * handshake (a refused connection); sessions already open survive a rule's deletion, like a
 * stateful cloud security group. A forward is allowed per key and destination, as OpenSSH's
 * `permitopen` would: anything else is answered "administratively prohibited".
 */
export class BastionServer {
  private listener: SshListener | undefined;

  constructor(private readonly opts: BastionServerOptions) {}

  async start(): Promise<void> {
    this.listener = new SshListener(
      this.opts.hostKey.privateKey,
      (client, _peer, guard) => this.serve(client, guard),
      (address) => this.opts.policy.admits(address),
    );
    await this.listener.listen(this.opts.address, this.opts.port);
  }

  private serve(client: Connection, guard: ConnectionGuard): void {
    let key: Buffer | undefined;
    client.on('authentication', guard.wrap('authenticating', (ctx) => {
      if (ctx.username !== this.opts.user) return ctx.reject(['publickey']);
      key = authenticateByKey(ctx, this.opts.policy.loginKeys()) ?? key;
    }));
    client.on('ready', guard.wrap('ready', () => {
      client.on('tcpip', guard.wrap('forwarding', (accept, reject, info) => {
        const target = key && this.opts.policy.route(key, info.destIP, info.destPort);
        if (!target) return reject();
        const upstream = connect({ host: target.host, port: target.port });
        // The upstream connects after a turn of the loop: the client may be gone by then.
        guard.whenClosed(() => upstream.destroy());
        upstream.once('error', () => guard.run('refusing a forward', () => reject()));
        upstream.once('connect', () =>
          guard.run('opening a forward', () => {
            const channel = accept();
            channel.on('error', () => upstream.destroy());
            upstream.on('error', () => channel.destroy());
            upstream.pipe(channel).pipe(upstream);
          }),
        );
      }));
      client.on('session', guard.wrap('session', (_accept, reject) => reject()));
    }));
  }

  async close(): Promise<void> {
    await this.listener?.close();
  }
}
