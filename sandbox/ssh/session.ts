import { bundleFileBytes, type Bundle } from '../../core/deployment/bundle.ts';
import { posix } from 'node:path';
import type { Duplex } from 'node:stream';
import { Client, type ClientChannel, type SFTPWrapper } from 'ssh2';
import { ErrorName, StepError, VM_BOOTSTRAP_HINT } from '../../core/errors.ts';
import { abortedError, SshError } from './errors.ts';
import { hostKeyMatches } from './hostKey.ts';
import { LineSplitter } from '../lines.ts';

/** A machine reached over SSH; `hostKey` is the OpenSSH public key line to pin. */
export interface SshHost {
  name: string;
  address: string;
  port: number;
  hostKey: string;
}

export interface SshSessionOptions {
  bastion: SshHost & { user: string };
  /** Login on the VMs (the deployment's key is installed for it by cloud-init). */
  user: string;
  /** OpenSSH-format private key; kept in memory only, never logged. */
  privateKey: string;
  /** Aborting closes every connection at once and fails what is in flight. */
  signal?: AbortSignal;
  /** Per-connection handshake limit; default 10 s. */
  connectTimeoutMs?: number;
  /** Pause between bootstrap-check attempts; default 1 s. */
  retryIntervalMs?: number;
}

export type OutputStream = 'stdout' | 'stderr';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * SSH to the VMs of one deployment through its bastion (a jump host): one connection to the
 * bastion with its host key pinned, then per VM a `direct-tcpip` channel and a second SSH
 * connection over it with the VM's host key pinned. Every connection is registered so
 * {@link SshSession.closeAll} (or the abort signal) closes them all — nothing stays open
 * between steps.
 */
export class SshSession {
  private readonly clients = new Set<Client>();
  private bastion: Promise<Client> | undefined;
  private readonly vms = new Map<string, Promise<Client>>();
  private readonly timeoutMs: number;

  constructor(private readonly opts: SshSessionOptions) {
    this.timeoutMs = opts.connectTimeoutMs ?? 10_000;
    opts.signal?.addEventListener('abort', () => this.closeAll(), { once: true });
  }

  private checkAborted(): void {
    if (this.opts.signal?.aborted) throw abortedError();
  }

  private get bastionLabel(): string {
    return `${this.opts.bastion.address}:${this.opts.bastion.port}`;
  }

  private connect(target: { label: string; isBastion: boolean; hostKey: string; username: string; timeoutMs: number }, via: { host: string; port: number } | { sock: Duplex }): Promise<Client> {
    this.checkAborted();
    const client = new Client();
    this.clients.add(client);
    client.on('close', () => this.clients.delete(client));
    let hostKeyMismatch = false;
    let handshake = false;
    return new Promise<Client>((resolve, reject) => {
      const fail = (err: Error & { level?: string; code?: string }) => {
        client.end();
        if (this.opts.signal?.aborted) return reject(abortedError());
        const who = target.isBastion ? `the bastion ${target.label}` : target.label;
        if (hostKeyMismatch) return reject(new SshError('hostKey', `host key of ${who} does not match the pinned key; refusing to connect`));
        if (err.level === 'client-authentication') {
          return reject(new SshError('auth', `${who} rejected the deployment key for user "${target.username}"`));
        }
        if (err.level === 'client-timeout') return reject(new SshError('timeout', `${who} did not answer the SSH handshake within ${target.timeoutMs} ms`));
        if (target.isBastion && (!handshake || err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET')) {
          return reject(new SshError('refused', `the bastion ${target.label} refused the connection (is bastion access open?)`));
        }
        reject(new SshError('other', `SSH connection to ${who} failed: ${err.message}`));
      };
      client.once('handshake', () => (handshake = true));
      client.once('ready', () => {
        client.removeListener('error', fail);
        client.on('error', () => undefined);
        resolve(client);
      });
      // `on`, not `once`: ssh2 can emit a second error (a handshake timeout after a refused key), and an
      // error with no listener would crash the runner. Rejecting twice is harmless.
      client.on('error', fail);
      client.once('close', () => fail(new Error('connection closed before it was ready')));
      client.connect({
        ...via,
        username: target.username,
        privateKey: this.opts.privateKey,
        readyTimeout: target.timeoutMs,
        hostVerifier: (key: Buffer) => {
          const ok = hostKeyMatches(target.hostKey, key);
          if (!ok) hostKeyMismatch = true;
          return ok;
        },
      });
    });
  }

  /** The (shared) bastion connection; a closed or failed one is replaced on the next call. */
  private bastionClient(timeoutMs = this.timeoutMs): Promise<Client> {
    if (!this.bastion) {
      const b = this.opts.bastion;
      const pending = this.connect({ label: this.bastionLabel, isBastion: true, hostKey: b.hostKey, username: b.user, timeoutMs }, { host: b.address, port: b.port });
      this.bastion = pending;
      const forget = () => {
        if (this.bastion === pending) this.bastion = undefined;
      };
      pending.then((c) => c.once('close', forget), forget);
    }
    return this.bastion;
  }

  /**
   * A channel through the bastion to the VM. Bounded: a bastion whose own connect to the VM hangs
   * (an address nobody answers yet) must not outlast the caller's deadline, e.g. the bootstrap limit.
   */
  private forward(bastion: Client, vm: SshHost, timeoutMs: number): Promise<ClientChannel> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const timer = setTimeout(() => {
        settled = true;
        reject(new SshError('timeout', `the bastion did not open a channel to ${vm.name} at ${vm.address}:${vm.port} within ${timeoutMs} ms`));
      }, timeoutMs);
      bastion.forwardOut('127.0.0.1', 0, vm.address, vm.port, (err, stream) => {
        clearTimeout(timer);
        if (settled) {
          stream?.destroy();
          return;
        }
        settled = true;
        if (!err) return resolve(stream);
        const reason = (err as Error & { reason?: number }).reason;
        if (reason === 1 || /administratively prohibited/i.test(err.message)) {
          return reject(new SshError('forward', `the bastion refused to forward to ${vm.name} (TCP forwarding is off: administratively prohibited)`));
        }
        reject(new SshError('forward', `the bastion could not reach ${vm.name} at ${vm.address}:${vm.port} (${err.message})`));
      });
    });
  }

  /** The connection to a VM through the bastion, opened once and reused. */
  private vmClient(vm: SshHost, timeoutMs = this.timeoutMs): Promise<Client> {
    let pending = this.vms.get(vm.name);
    if (!pending) {
      pending = (async () => {
        const bastion = await this.bastionClient(timeoutMs);
        const sock = await this.forward(bastion, vm, timeoutMs);
        try {
          return await this.connect(
            { label: `${vm.name} (${vm.address}:${vm.port})`, isBastion: false, hostKey: vm.hostKey, username: this.opts.user, timeoutMs },
            { sock },
          );
        } catch (e) {
          sock.destroy();
          throw e;
        }
      })();
      const p = pending;
      this.vms.set(vm.name, p);
      const forget = () => {
        if (this.vms.get(vm.name) === p) this.vms.delete(vm.name);
      };
      p.then((c) => c.once('close', forget), forget);
    }
    return pending;
  }

  /** Runs a command on a VM, streaming its output line by line; resolves with its exit code. */
  async exec(vm: SshHost, command: string, onLine: (stream: OutputStream, text: string) => void): Promise<number> {
    const client = await this.vmClient(vm);
    return new Promise<number>((resolve, reject) => {
      client.exec(command, (err, channel) => {
        if (err) return reject(new SshError('other', `could not run a command on ${vm.name}: ${err.message}`));
        const out = new LineSplitter((l) => onLine('stdout', l));
        const errs = new LineSplitter((l) => onLine('stderr', l));
        let code: number | undefined;
        channel.on('data', (d: Buffer) => out.push(d));
        channel.stderr.on('data', (d: Buffer) => errs.push(d));
        channel.on('exit', (c: number | null, signal?: string) => {
          code = typeof c === 'number' ? c : signal ? 255 : undefined;
        });
        channel.on('close', () => {
          out.flush();
          errs.flush();
          if (this.opts.signal?.aborted) return reject(abortedError());
          if (code === undefined) return reject(new SshError('other', `the connection to ${vm.name} closed before the command finished`));
          resolve(code);
        });
      });
    });
  }

  /**
   * Writes files (path relative to the VM user's home → content) over SFTP, creating
   * directories. Absolute paths and ".." are refused: the bundle lands in the home only.
   */
  async push(vm: SshHost, files: Bundle): Promise<void> {
    const client = await this.vmClient(vm);
    const sftp = await new Promise<SFTPWrapper>((resolve, reject) =>
      client.sftp((err, s) => (err ? reject(new SshError('other', `SFTP to ${vm.name} failed: ${err.message}`)) : resolve(s))),
    );
    try {
      const made = new Set<string>();
      for (const [path, content] of Object.entries(files)) {
        const normal = posix.normalize(path);
        if (posix.isAbsolute(normal) || normal.split('/').includes('..')) throw new SshError('other', `refusing to push "${path}": paths must stay inside the home`);
        const dir = posix.dirname(normal);
        const parts = dir === '.' ? [] : dir.split('/');
        for (let i = 1; i <= parts.length; i++) {
          const sub = parts.slice(0, i).join('/');
          if (made.has(sub)) continue;
          await new Promise<void>((resolve) => sftp.mkdir(sub, () => resolve()));
          made.add(sub);
        }
        await new Promise<void>((resolve, reject) =>
          sftp.writeFile(normal, bundleFileBytes(content), (err) => (err ? reject(new SshError('other', `writing ${path} on ${vm.name} failed: ${err.message}`)) : resolve())),
        );
      }
    } finally {
      sftp.end();
    }
  }

  /**
   * The bootstrap check: retries until the VM accepts the deployment key through the bastion.
   * A host-key mismatch fails at once (retrying would not make a wrong key right).
   * @param nominalSeconds the limit the user knows (180 s) when `limitMs` is scaled for tests.
   */
  async waitForSsh(vm: SshHost, limitMs: number, nominalSeconds = Math.round(limitMs / 1000)): Promise<void> {
    const deadline = Date.now() + limitMs;
    let last: Error | undefined;
    for (;;) {
      this.checkAborted();
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      try {
        await this.vmClient(vm, Math.max(100, Math.min(remaining, this.timeoutMs)));
        return;
      } catch (e) {
        if (e instanceof SshError && (e.kind === 'hostKey' || e.kind === 'aborted')) throw e;
        last = e instanceof Error ? e : new Error(String(e));
      }
      await sleep(Math.max(0, Math.min(this.opts.retryIntervalMs ?? 1000, deadline - Date.now())));
    }
    throw new StepError(
      ErrorName.VmBootstrapTimeout,
      `${vm.name} was not reachable over SSH through the bastion within ${nominalSeconds} s; ${VM_BOOTSTRAP_HINT}` +
        (last ? ` (last attempt: ${last.message})` : ''),
    );
  }

  /** Closes every connection this session opened (VMs first, then the bastion). */
  closeAll(): void {
    for (const client of this.clients) client.end();
    for (const client of this.clients) client.destroy();
    this.clients.clear();
    this.vms.clear();
    this.bastion = undefined;
  }
}
