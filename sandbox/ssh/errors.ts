/**
 * Why an SSH connection through the bastion failed, worded for the user. `kind` lets callers
 * decide what to retry: the bootstrap check retries everything except a host-key mismatch.
 */
export type SshFailureKind = 'refused' | 'hostKey' | 'auth' | 'forward' | 'timeout' | 'aborted' | 'other';

export class SshError extends Error {
  override readonly name = 'SshError';
  constructor(
    readonly kind: SshFailureKind,
    message: string,
  ) {
    super(message);
  }
}

export function abortedError(): SshError {
  return new SshError('aborted', 'the step was stopped; SSH connections closed');
}
