import type { DeploymentRecord, StepRecord } from '../model.ts';
import type { DeploymentStore } from '../ports.ts';

/**
 * Pre-start by time (issue 12): once the engine knows how long a deployment's steps take, a sandbox
 * starts only when its step's release is expected within a couple of sandbox starts (`verdictFor`,
 * core/usecases/release.ts, says how many and why). The durations come from
 * the tenant's last ended deployment of the same name (redeploying the same workflow is the common
 * case); without them the cascade is bounded by the count cap alone. See docs/ARCHITECTURE.md.
 */

/**
 * Seconds each step ran, by step id; system steps included (bastion-open leads the roots). A run starts at the
 * release once its sandbox is up: `startedAt`, or later `readyAt` (pre-started) or `claimedAt` (started at the
 * release): a sandbox's start is not the step's duration, or a step that lost a start would look a start long.
 */
export function stepDurations(steps: readonly StepRecord[]): Record<string, number> {
  const seconds: Record<string, number> = {};
  for (const s of steps) {
    if (s.status !== 'succeeded' || !s.startedAt || !s.endedAt) continue;
    const from = Math.max(...[s.startedAt, s.readyAt, s.claimedAt].flatMap((t) => (t ? [Date.parse(t)] : [])));
    seconds[s.stepId] = Math.max(0, (Date.parse(s.endedAt) - from) / 1000);
  }
  return seconds;
}

/** How many of the tenant's latest deployments Prepare looks through for an earlier run of the same name. */
export const HISTORY_LOOKBACK = 25;

/**
 * The durations of the tenant's latest ended deployment named like this one (one Query of the tenant's
 * deployments, newest first, and one of that deployment's steps), or undefined when there is none.
 */
export async function expectedDurations(store: DeploymentStore, deployment: DeploymentRecord): Promise<Record<string, number> | undefined> {
  const page = await store.listDeployments(deployment.tenantId, { limit: HISTORY_LOOKBACK });
  const previous = page.items.find((d) => d.deploymentId !== deployment.deploymentId && d.name === deployment.name && d.endedAt !== undefined);
  if (!previous) return undefined;
  const seconds = stepDurations(await store.getSteps(previous.deploymentId));
  return Object.keys(seconds).length > 0 ? seconds : undefined;
}

/**
 * When `step` is expected to be released, in epoch ms: its dependencies' expected ends. A dependency
 * that ended is done; a running one ends its expected duration after its start; a waiting one is
 * released as expected and runs once its sandbox is up (pre-started `startMs` after `prestartedAt`).
 * A step with no known duration counts 0 and a record not read counts as ended: the estimate errs
 * early, so the lookahead never holds a sandbox back on what it does not know.
 */
export function expectedReleaseAt(
  step: StepRecord,
  steps: ReadonlyMap<string, StepRecord>,
  dependenciesOf: (s: StepRecord) => string[],
  expected: Readonly<Record<string, number>>,
  startMs: number,
  now: number,
): number {
  const ends = new Map<string, number>();
  const releaseAt = (s: StepRecord): number => Math.max(now, ...dependenciesOf(s).map((d) => endAt(d)));
  const endAt = (stepId: string): number => {
    const known = ends.get(stepId);
    if (known !== undefined) return known;
    const s = steps.get(stepId);
    const duration = (expected[stepId] ?? 0) * 1000;
    let end = now;
    if (s?.status === 'running' && s.startedAt) end = Math.max(now, Date.parse(s.startedAt) + duration);
    else if (s?.status === 'waiting') {
      const up = s.readyAt ? Date.parse(s.readyAt) : s.prestartedAt ? Date.parse(s.prestartedAt) + startMs : now + startMs;
      end = Math.max(releaseAt(s), up) + duration;
    }
    ends.set(stepId, end);
    return end;
  };
  return releaseAt(step);
}

/** The deployment's own sandbox start so far: the median of its pre-started sandboxes' `prestartedAt` → `readyAt`, ms. */
export function observedStartMs(steps: ReadonlyMap<string, StepRecord>): number | undefined {
  const starts = [...steps.values()]
    .flatMap((s) => (s.prestartedAt && s.readyAt ? [Date.parse(s.readyAt) - Date.parse(s.prestartedAt)] : []))
    .sort((a, b) => a - b);
  return starts.length > 0 ? starts[Math.floor(starts.length / 2)] : undefined;
}
