/**
 * Upper bounds of a deployment's run, in one place: the secrets' TTL is sized from them so a
 * token never expires while its execution may still legally run.
 */

/** The longest a step may run (core/deployment/schema.ts caps `timeoutSeconds` at this). */
export const MAX_STEP_TIMEOUT_SECONDS = 24 * 3600;

/** The longest AwaitDependencies waits for a step's dependencies (its ASL TimeoutSeconds). */
export const MAX_DEPENDENCY_WAIT_SECONDS = 7 * 24 * 3600;

/**
 * The execution's own TimeoutSeconds: no run outlives it. One full dependency wait followed by one
 * full-length step, plus a day for setup and cleanup. (endings-10 owns the ASL value; keep them equal.)
 */
export const EXECUTION_TIMEOUT_SECONDS = MAX_DEPENDENCY_WAIT_SECONDS + MAX_STEP_TIMEOUT_SECONDS + 24 * 3600;

/** After the execution's bound, time for Cleanup's retries and the safety net to delete the secrets first. */
export const SECRET_TTL_MARGIN_SECONDS = 24 * 3600;

/** DynamoDB TTL of the token and SSH key items: the last resort, never earlier than the longest legal run. */
export const SECRET_TTL_SECONDS = EXECUTION_TIMEOUT_SECONDS + SECRET_TTL_MARGIN_SECONDS;
