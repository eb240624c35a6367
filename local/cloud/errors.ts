/**
 * A failure the local cloud's REST API answers with a specific HTTP status (404 for a missing
 * resource, 409 for a duplicate…). Backends throw it; the server turns it into `{message}`.
 * Anything else a backend throws becomes a 500, as a real cloud's internal error would.
 */
export class CloudApiError extends Error {
  override readonly name = 'CloudApiError';
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}
