import type { EngineDeps } from '../core/usecases/deps.ts';
import { engineDepsFromEnv } from '../adapters/aws/engineDeps.ts';

/**
 * Handlers take their dependencies from a provider: in Lambda it builds them from the
 * environment once per container; the local engine passes its own (same adapters, local endpoints).
 */
export type DepsProvider = () => EngineDeps;

let fromEnv: EngineDeps | undefined;
export const depsFromEnv: DepsProvider = () => (fromEnv ??= engineDepsFromEnv(process.env));
