import type { ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { Connection, ServerChannel } from 'ssh2';
import type { ConnectionGuard } from './connectionGuard.ts';
import type { HostKey } from './hostKey.ts';
import type { ProcessGroups } from './processes.ts';
import { authenticateByKey } from './publicKeyAuth.ts';
import { serveSftp } from './sftpServer.ts';
import { SshListener } from './sshListener.ts';

export interface VmServerOptions {
  name: string;
  address: string;
  port: number;
  /** The VM's working directory: the home of its only user, the root of its SFTP view. */
  home: string;
  /** The VM's own temporary directory (its commands' TMPDIR), removed with the VM. */
  tmp: string;
  /** Read at every login, as sshd does, so keys installed by cloud-init take effect at once. */
  authorizedKeysPath: string;
  hostKey: HostKey;
  processes: ProcessGroups;
}

/** The environment of a VM command; nothing of the cloud process leaks in except PATH. */
export function vmEnv(opts: { home: string; tmp: string; name: string; sshConnection?: string }): Record<string, string> {
  const env: Record<string, string> = {
    HOME: opts.home,
    // The host's /tmp is not the VM's: what a killed command leaves there (Ansible's payload) goes with the VM.
    TMPDIR: opts.tmp,
    HOSTNAME: opts.name,
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    LANG: 'C.UTF-8',
    SHELL: '/bin/sh',
  };
  if (opts.sshConnection) env.SSH_CONNECTION = opts.sshConnection;
  return env;
}

async function readAuthorizedKeys(path: string): Promise<string[]> {
  try {
    return (await readFile(path, 'utf8')).split('\n').filter((l) => l.trim() && !l.startsWith('#'));
  } catch {
    return [];
  }
}

/**
 * Wires a child to an exec channel: output streamed, exit status reported, then EOF. Once the
 * client is gone nothing more is written (ssh2 would throw) and the command's process group is hung up.
 */
function bridge(child: ChildProcess, channel: ServerChannel, guard: ConnectionGuard): void {
  child.stdout?.pipe(channel, { end: false });
  child.stderr?.pipe(channel.stderr, { end: false });
  channel.pipe(child.stdin!).on('error', () => undefined);
  child.stdin?.on('error', () => undefined);
  channel.on('error', () => undefined);
  let finished = false;
  guard.whenClosed(() => {
    // As a pty session's hangup does: SIGHUP to the command's process group when its client goes, so a
    // step that timed out or was stopped leaves nothing running on the VM (`nohup` jobs survive, as there).
    if (!finished && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGHUP');
      } catch {
        // Already gone.
      }
    }
    child.stdout?.unpipe(channel);
    child.stderr?.unpipe(channel.stderr);
    // Drained, not paused: a command writing to a gone client must not block on a full pipe.
    child.stdout?.resume();
    child.stderr?.resume();
  });
  const finish = (code: number | null, signal: NodeJS.Signals | null) => {
    if (finished) return;
    finished = true;
    guard.run('reporting the exit status', () => {
      if (signal) channel.exit(signal.replace(/^SIG/, ''), false, '');
      else channel.exit(code ?? 255);
      channel.end();
    });
  };
  child.on('error', () => finish(127, null));
  child.on('exit', (code, signal) => {
    // A background job that kept our stdout open would hold 'close' forever (OpenSSH hangs
    // the same way); give buffered output a moment, then report the exit regardless.
    const timer = setTimeout(() => finish(code, signal), 200);
    child.on('close', () => {
      clearTimeout(timer);
      finish(code, signal);
    });
  });
}

/**
 * One VM: an SSH server on the VM's own loopback address with `exec` (via /bin/sh -c in the
 * home) and `sftp`. Logins are by public key against the home's `.ssh/authorized_keys`.
 */
export class VmServer {
  private listener: SshListener | undefined;

  constructor(private readonly opts: VmServerOptions) {}

  async start(): Promise<void> {
    const o = this.opts;
    this.listener = new SshListener(o.hostKey.privateKey, (client, peer, guard) => this.serve(client, peer, guard));
    await this.listener.listen(o.address, o.port);
  }

  private serve(client: Connection, peer: { remoteAddress: string; remotePort: number }, guard: ConnectionGuard): void {
    const o = this.opts;
    client.on('authentication', (ctx) => {
      readAuthorizedKeys(o.authorizedKeysPath).then(
        (keys) => guard.run('authenticating', () => authenticateByKey(ctx, keys)),
        () => guard.run('authenticating', () => ctx.reject()),
      );
    });
    client.on('ready', guard.wrap('ready', () => {
      client.on('session', guard.wrap('opening a session', (acceptSession) => {
        const session = acceptSession();
        session.on('exec', guard.wrap('exec', (accept, _reject, info) => {
          const channel = accept();
          let child: ChildProcess;
          try {
            child = o.processes.spawn(info.command, {
              cwd: o.home,
              env: vmEnv({ home: o.home, tmp: o.tmp, name: o.name, sshConnection: `${peer.remoteAddress} ${peer.remotePort} ${o.address} ${o.port}` }),
            });
          } catch (e) {
            channel.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
            channel.exit(255);
            channel.end();
            return;
          }
          bridge(child, channel, guard);
        }));
        session.on('sftp', guard.wrap('sftp', (accept) => serveSftp(accept(), o.home, guard)));
        session.on('pty', guard.wrap('pty', (_a, reject) => reject?.()));
        session.on('shell', guard.wrap('shell', (_a, reject) => reject()));
      }));
    }));
  }

  async close(): Promise<void> {
    await this.listener?.close();
  }
}
