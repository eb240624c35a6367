/**
 * Exit codes of `ctd`, one meaning each so scripts can branch on them:
 * 0 success; 1 the deployment failed or was cancelled (or the server failed, 5xx);
 * 2 the request was refused (4xx, bad input or usage); 3 the endpoint could not be reached.
 */
export const EXIT = {
  ok: 0,
  failed: 1,
  rejected: 2,
  unreachable: 3,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as a single line with a chosen exit code (no stack trace). */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(
    message: string,
    readonly exitCode: number = EXIT.rejected,
  ) {
    super(message);
  }
}
