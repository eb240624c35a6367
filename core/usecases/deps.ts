import type {
  Clock,
  DeploymentStore,
  ExecutionService,
  SandboxLauncher,
  SecretVault,
  TokenIdentifier,
} from '../ports.ts';
import type { MetricsPort } from '../metrics.ts';

/** What the use-cases need; handlers build it once per container (AWS) or per engine (local). */
export interface EngineDeps {
  store: DeploymentStore;
  vault: SecretVault;
  executions: ExecutionService;
  sandboxes: SandboxLauncher;
  identity: TokenIdentifier;
  clock: Clock;
  /** Structured log without secrets; Powertools Logger in Lambda, a line writer locally. */
  log: (message: string, details?: Record<string, unknown>) => void;
  /** The engine's metrics (core/metrics.ts): EMF through Powertools in Lambda, into the engine's log locally. */
  metrics: MetricsPort;
  /** Start sandboxes ahead of their step's release (issue 12); absent = off. */
  prestart?: PrestartPolicy;
}

/** How far sandboxes may start ahead: at most `maxWaiting` wait for their release at once, per deployment. */
export interface PrestartPolicy {
  maxWaiting: number;
  /**
   * The sandbox start to hide, seconds, until the deployment has measured its own. Given, Prepare looks up how
   * long the steps took in the last run of the same deployment, and sandboxes start no earlier than one start
   * before their expected release (core/usecases/lookahead.ts).
   */
  startSeconds?: number;
}

export const iso = (clock: { now(): number }): string => new Date(clock.now()).toISOString();
