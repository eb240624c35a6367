import { TASK_ENV } from '../core/config/names.ts';

/**
 * The idle limit of a sandbox started ahead of its release (PrestartPolicy.maxIdleSeconds), from the release the
 * state machine started it with (TASK_ENV.release: AwaitDependencies' answer, as JSON). Only a pre-start's limit
 * counts. A value it cannot use means no limit, named in `problem` for the log: pre-start must never fail a step.
 */
export function idleLimitOf(raw: string | undefined): { maxIdleSeconds?: number; problem?: string } {
  if (raw === undefined) return {};
  let release: unknown;
  try {
    release = JSON.parse(raw);
  } catch {
    return { problem: `${TASK_ENV.release} is not JSON: ${JSON.stringify(raw.slice(0, 200))}` };
  }
  if (release === null || typeof release !== 'object' || Array.isArray(release)) return { problem: `${TASK_ENV.release} is not an object: ${JSON.stringify(raw.slice(0, 200))}` };
  const { prestart, maxIdleSeconds } = release as { prestart?: unknown; maxIdleSeconds?: unknown };
  if (prestart !== true || maxIdleSeconds === undefined) return {};
  if (typeof maxIdleSeconds !== 'number' || !(maxIdleSeconds > 0) || !Number.isFinite(maxIdleSeconds)) {
    return { problem: `${TASK_ENV.release}: maxIdleSeconds must be a number of seconds > 0, got ${JSON.stringify(maxIdleSeconds)}` };
  }
  return { maxIdleSeconds };
}
