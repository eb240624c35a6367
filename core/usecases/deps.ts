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
  /**
   * The longest a pre-started sandbox waits for its release once up, seconds (default DEFAULT_PRESTART_MAX_IDLE_SECONDS).
   * Past it the sandbox gives its place back and stops, and the step starts a fresh one at its release: a bound on
   * what each step's idle sandbox can cost, however long its dependencies run (a first run has no lookahead); and a
   * dependency that has run this long no longer gets sandboxes started behind it. Like `startSeconds`, on the engine's
   * clock (the local engine scales the default by its time scale).
   */
  maxIdleSeconds?: number;
}

/** Ten minutes of one idle 1 vCPU / 2 GB Fargate task (under a cent); a step waiting longer pays one start at its release. */
export const DEFAULT_PRESTART_MAX_IDLE_SECONDS = 600;

export const iso = (clock: { now(): number }): string => new Date(clock.now()).toISOString();
