import { spawn } from 'node:child_process';

/** A system command (ip, nft, ssh-keygen…) that exited non-zero; the message carries its stderr. */
export class CommandError extends Error {
  override readonly name = 'CommandError';
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${command} exited ${exitCode ?? 'on a signal'}: ${stderr.trim().slice(0, 500)}`);
  }
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs a short-lived command to completion and waits for it, so no zombie is left behind
 * (PID 1 on these machines does not reap orphans). Throws {@link CommandError} on failure
 * unless `allowFailure` is set.
 */
export function run(
  file: string,
  args: readonly string[],
  opts: { input?: string; allowFailure?: boolean; timeoutMs?: number } = {},
): Promise<RunResult & { code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, {
      stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
      timeout: opts.timeoutMs ?? 30_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0 && !opts.allowFailure) {
        reject(new CommandError([file, ...args].join(' '), code, stderr));
        return;
      }
      resolve({ stdout, stderr, code });
    });
    if (child.stdin) {
      // A command that exits without reading its input must not crash us with EPIPE.
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input);
    }
  });
}
