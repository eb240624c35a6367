import type { DeploymentRecord, StepRecord } from '../model.ts';
import type { DeploymentTransitionName } from './deployment.ts';
import type { StepTransitionName } from './step.ts';
import type { Actor } from './types.ts';

/** What callers may write besides the status; the status itself moves only by a named transition. */
export type DeploymentFields = Partial<Omit<DeploymentRecord, 'deploymentId' | 'tenantId' | 'status'>>;
export type StepFields = Partial<Omit<StepRecord, 'deploymentId' | 'stepId' | 'status'>>;

export interface StepTransitionRequest {
  name: StepTransitionName;
  by: Actor;
  fields?: StepFields;
  /** Apply only while the step's `attempt` is this (the runner's claim on one attempt). */
  ifAttempt?: number;
}

export interface DeploymentTransitionRequest {
  name: DeploymentTransitionName;
  by: Actor;
  fields?: DeploymentFields;
}

