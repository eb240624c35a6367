import type { Bundle } from '../../core/deployment/bundle.ts';
import type { Topology } from '../../core/deployment/schema.ts';
import type { DeploymentRecord, StepRecord } from '../../core/model.ts';
import type { CloudContext, CloudDriver, CloudResourceRef } from '../../core/ports.ts';
import type { StepUser } from '../stepUser.ts';

/** Where a step's output goes: the step log (stored, shown by `ctd logs`). Never pass secrets. */
export interface StepLogger {
  line(stream: 'stdout' | 'stderr' | 'engine', text: string, host?: string): void;
}

export interface DeploymentKey {
  /** OpenSSH-format ed25519 private key; lives only in this sandbox's memory and private work dir. */
  privateKey: string;
  /** "ssh-ed25519 AAAA… ctd-<deploymentId>" */
  publicKey: string;
}

/** Everything an action may use. The runner builds it; actions never read the environment. */
export interface ActionContext {
  deployment: DeploymentRecord;
  topology: Topology;
  step: StepRecord;
  /** The deployment's bundle (path → content). */
  files: Bundle;
  /** The user's cloud token, plaintext, for this sandbox only. */
  token: string;
  sshKey: DeploymentKey;
  cloud: CloudDriver;
  /** Acts with the user's token; its `record`/`forget` write the deployment's cloud resource items. */
  cloudCtx: CloudContext;
  /** What the deployment recorded in the cloud so far (deprovision and bastion-close delete from it). */
  recordedResources(): Promise<CloudResourceRef[]>;
  /** A private, empty directory of this sandbox, removed when the step ends. */
  workDir: string;
  /** Who the user's own code runs as (a `run` command, ansible-playbook); unset: as the runner. */
  stepUser?: StepUser;
  log: StepLogger;
  /** Aborted when the step is stopped (StopTask, timeout, cancel): stop work, close connections. */
  signal: AbortSignal;
  /** Multiplies every time limit (1 in production; tests shrink the 180 s bootstrap limit with it). */
  timeScale: number;
}

/** An action returns a small JSON-able output (stored on the step) or nothing; it throws StepError to fail. */
export type Action = (ctx: ActionContext) => Promise<Record<string, unknown> | void>;
