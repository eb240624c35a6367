/**
 * The deployment schema's constants, apart from its zod schemas (schema.ts re-exports them): the
 * step runner needs these at start-up and must not load zod for them (docs/BENCHMARKS.md §2).
 */

/** Ids the engine uses for its own system steps; a workflow cannot declare them. */
export const SYSTEM_STEP_IDS = ['bastion-open', 'bastion-close'] as const;
export type SystemStepId = (typeof SYSTEM_STEP_IDS)[number];

/** A step's time limit when its spec sets none. */
export const DEFAULT_STEP_TIMEOUT_SECONDS = 3600;
