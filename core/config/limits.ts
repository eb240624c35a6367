/**
 * Upper bounds of a deployment's run, in one place: the secrets' TTL is sized from them so a
 * token never expires while its execution may still legally run.
 */

/** The longest a step may run (core/deployment/schema.ts caps `timeoutSeconds` at this). */
export const MAX_STEP_TIMEOUT_SECONDS = 24 * 3600;

/** The longest AwaitDependencies waits for a step's dependencies (its ASL TimeoutSeconds). */
export const MAX_DEPENDENCY_WAIT_SECONDS = 7 * 24 * 3600;

/**
 * The execution's own TimeoutSeconds (statemachine/deployment.asl.json): no legal run outlives it.
 * Every step of RunWorkflow has its iteration from the start (batches of 40, each its own inline
 * Map), so one round bounds them all: one dependency wait plus a step's 9 attempts (1 + its Ctd.*
 * retries) at the largest timeout plus the grace period and bookkeeping; then bastion open/close,
 * Summarize and DeleteSecrets with their retries. That is about 16.1 days; rounded up to whole days.
 * test/unit/asl.test.ts recomputes it from the ASL and the schema's limits, so a larger limit there fails it.
 */
export const EXECUTION_TIMEOUT_SECONDS = 17 * 24 * 3600;

/** After the execution's bound, time for Cleanup's retries and the safety net to delete the secrets first. */
export const SECRET_TTL_MARGIN_SECONDS = 24 * 3600;

/** DynamoDB TTL of the token and SSH key items: the last resort, never earlier than the longest legal run. */
export const SECRET_TTL_SECONDS = EXECUTION_TIMEOUT_SECONDS + SECRET_TTL_MARGIN_SECONDS;

/** Cleanup-only executions the safety net starts for one deployment before it gives up and reports what is open. */
export const MAX_CLEANUP_ATTEMPTS = 3;
