import ssh2 from 'ssh2';
import type { Channel } from 'ssh2';

const { Client } = ssh2;
type SshClient = InstanceType<typeof Client>;

/** A minimal OpenStack client for tests: endpoints from the token's catalog, as the driver does. */
export class OsApi {
  private constructor(
    readonly token: string,
    private readonly endpoints: Record<string, string>,
    readonly projectId: string,
  ) {}

  static async connect(keystoneUrl: string, token: string): Promise<OsApi> {
    const res = await fetch(`${keystoneUrl}/auth/tokens`, { headers: { 'x-auth-token': token, 'x-subject-token': token } });
    if (!res.ok) throw new Error(`token validation failed: ${res.status}`);
    const body = (await res.json()) as { token: { project: { id: string }; catalog: { type: string; endpoints: { interface: string; url: string }[] }[] } };
    const endpoints = Object.fromEntries(body.token.catalog.map((s) => [s.type, s.endpoints.find((e) => e.interface === 'public')!.url]));
    return new OsApi(token, endpoints, body.token.project.id);
  }

  async call(service: 'compute' | 'network' | 'image', method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const base = service === 'network' ? `${this.endpoints.network}/v2.0` : service === 'image' ? `${this.endpoints.image}/v2` : this.endpoints.compute;
    const res = await fetch(`${base}${path}`, {
      method,
      headers: { 'x-auth-token': this.token, 'content-type': 'application/json', 'openstack-api-version': 'compute 2.1' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      // HTML or empty: keep the text.
    }
    return { status: res.status, body: parsed };
  }

  async ok(service: 'compute' | 'network' | 'image', method: string, path: string, body?: unknown): Promise<any> {
    const answer = await this.call(service, method, path, body);
    if (answer.status >= 300) throw new Error(`${method} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
    return answer.body;
  }

  /** Polls a server until it leaves BUILD. */
  async settled(serverId: string, ms = 10_000): Promise<any> {
    const end = Date.now() + ms;
    for (;;) {
      const { server } = await this.ok('compute', 'GET', `/servers/${serverId}`);
      if (server.status !== 'BUILD' || Date.now() > end) return server;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** The host key line in a console log's `SSH HOST KEY KEYS` block. */
export function hostKeyFromConsole(output: string): string | undefined {
  const block = /-----BEGIN SSH HOST KEY KEYS-----\n([\s\S]*?)-----END SSH HOST KEY KEYS-----/.exec(output)?.[1];
  return block?.split('\n').find((l) => l.startsWith('ssh-ed25519'))?.split(' ').slice(0, 2).join(' ');
}

export interface SshAttempt {
  client: SshClient;
  /** The host key the server presented ("ssh-ed25519 AAAA…"). */
  hostKey: string;
}

/** One real SSH login (ssh2 client); rejects with the client's error (refused, auth failed…). */
export function sshLogin(opts: { host?: string; port?: number; sock?: Channel; username: string; privateKey: string }): Promise<SshAttempt> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    let hostKey = '';
    client.once('ready', () => resolve({ client, hostKey }));
    client.once('error', (e) => {
      client.end();
      reject(e);
    });
    client.connect({
      host: opts.host,
      port: opts.port,
      sock: opts.sock,
      username: opts.username,
      privateKey: opts.privateKey,
      readyTimeout: 5000,
      hostVerifier: (key: Buffer) => {
        hostKey = `ssh-ed25519 ${key.toString('base64')}`;
        return true;
      },
    });
  });
}

/** Opens a direct-tcpip channel through a bastion session; a refusal rejects ("Channel open failure"). */
export function forward(bastion: SshClient, host: string, port: number): Promise<Channel> {
  return new Promise((resolve, reject) => bastion.forwardOut('127.0.0.1', 0, host, port, (err, stream) => (err ? reject(err) : resolve(stream))));
}

/** Runs a command over an SSH session and returns its stdout. */
export function exec(client: SshClient, command: string): Promise<string> {
  return new Promise((resolve, reject) =>
    client.exec(command, (err, stream) => {
      if (err) return reject(err);
      let out = '';
      stream.on('data', (d: Buffer) => (out += d.toString()));
      stream.stderr.on('data', () => undefined);
      stream.on('close', () => resolve(out));
    }),
  );
}
