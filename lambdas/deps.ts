import type { EngineDeps } from '../core/usecases/deps.ts';
import { engineConfigFromEnv, engineDepsFromEnv } from '../adapters/aws/engineDeps.ts';
import { LAMBDAS, type LambdaName } from './catalog.ts';
import { telemetryOf } from './observability.ts';

/**
 * Handlers take their dependencies from a provider: in Lambda it builds them from the
 * environment once per container; the local engine passes its own (same adapters, local endpoints).
 */
export type DepsProvider = () => EngineDeps;

/**
 * The provider of a deployed function: its environment is parsed with its catalog entry's schema.
 * In Lambda that happens at start-up (module load), so a missing or wrong variable fails the cold
 * start naming it; the ports are built on first use. Elsewhere (tests, local mode importing the
 * module) nothing is read until a handler runs with these deps.
 */
export function depsFromEnv(name: LambdaName): DepsProvider {
  const shredBy = LAMBDAS[name].shredsTokens;
  const configure = () => ({ ...engineConfigFromEnv(process.env, `function ${name}`, LAMBDAS[name].config), ...(shredBy ? { shredBy } : {}) });
  let config = process.env.AWS_LAMBDA_FUNCTION_NAME ? configure() : undefined;
  let deps: EngineDeps | undefined;
  return () => (deps ??= engineDepsFromEnv((config ??= configure()), telemetryOf(LAMBDAS[name].kind)));
}
