import { CtdClient, type TokenSource } from './client.ts';
import { resolveConnection, type Connection, type Environment } from './config.ts';

/**
 * Everything a command touches outside itself, injected so tests drive the real commands
 * in-process (captured output, fake clock and signals) instead of monkey-patching `process`.
 */

export interface Output {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface SignalSource {
  on(signal: 'SIGINT' | 'SIGTERM', listener: () => void): unknown;
  off(signal: 'SIGINT' | 'SIGTERM', listener: () => void): unknown;
}

export interface CliIo {
  stdout: Output;
  stderr: Output;
  env: NodeJS.ProcessEnv;
  cwd: string;
  fetch: typeof fetch;
  sleep(ms: number): Promise<void>;
  now(): number;
  /** How often `deploy --wait` and `logs --follow` poll the API. */
  pollIntervalMs: number;
  signals: SignalSource;
  /** Forced exit for the second Ctrl-C of `ctd local up`. */
  exit(code: number): void;
}

export function defaultIo(): CliIo {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    fetch: (input, init) => fetch(input, init),
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    now: () => Date.now(),
    pollIntervalMs: 500,
    signals: process,
    exit: (code) => process.exit(code),
  };
}

export interface GlobalOptions {
  endpoint?: string;
  token?: string;
  json?: boolean;
}

export class CommandContext {
  /** Tokens seen by this run; scrubbed from every line written, as a last line of defence. */
  private readonly secrets = new Set<string>();
  private connection?: Connection;

  constructor(
    readonly io: CliIo,
    readonly globals: GlobalOptions,
  ) {
    const explicit = globals.token ?? io.env.CTD_TOKEN;
    if (explicit) this.secrets.add(explicit);
  }

  get json(): boolean {
    return this.globals.json === true;
  }

  get environment(): Environment {
    return { env: this.io.env, cwd: this.io.cwd, fetch: this.io.fetch };
  }

  print(line = ''): void {
    this.io.stdout.write(`${this.redact(line)}\n`);
  }

  printJson(value: unknown): void {
    this.print(JSON.stringify(value, null, 2));
  }

  error(line: string): void {
    this.io.stderr.write(`${this.redact(line)}\n`);
  }

  redact(text: string): string {
    let out = text;
    for (const secret of this.secrets) if (secret.length >= 4) out = out.split(secret).join('<token>');
    return out;
  }

  async resolve(): Promise<Connection> {
    if (!this.connection) this.connection = await resolveConnection(this.globals, this.environment);
    return this.connection;
  }

  async client(): Promise<CtdClient> {
    const connection = await this.resolve();
    return new CtdClient({ endpoint: connection.endpoint, token: this.remember(connection.token), fetch: this.io.fetch });
  }

  private remember(source: TokenSource): TokenSource {
    const note = (token: string | undefined) => {
      if (token) this.secrets.add(token);
      return token;
    };
    return {
      get: async () => note(await source.get()),
      ...(source.refresh ? { refresh: async () => note(await source.refresh?.()) } : {}),
    };
  }
}
