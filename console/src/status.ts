import type { DeploymentStatus, StepStatus } from '../../core/model.ts';
import { ERROR_TABLE } from '../../core/errors.ts';

/** Every status has a word and a shape as well as a colour: colour alone tells nothing to some readers. */
export const STEP_STATUSES: readonly StepStatus[] = ['waiting', 'running', 'succeeded', 'failed', 'aborted', 'skipped', 'cancelled'];

export const STATUS_ICON: Record<StepStatus, string> = {
  waiting: '○',
  running: '◐',
  succeeded: '✓',
  failed: '✕',
  aborted: '■',
  skipped: '–',
  cancelled: '⊘',
};

export const DEPLOYMENT_STATUSES: readonly DeploymentStatus[] = ['PENDING', 'RUNNING', 'CANCELLING', 'SUCCEEDED', 'FAILED', 'CANCELLED'];
export const FINAL: readonly DeploymentStatus[] = ['SUCCEEDED', 'FAILED', 'CANCELLED'];

/** The deployment status in the step palette, so one set of colours serves the whole page. */
export function deploymentTone(status: DeploymentStatus): StepStatus {
  switch (status) {
    case 'PENDING':
      return 'waiting';
    case 'RUNNING':
      return 'running';
    case 'CANCELLING':
    case 'CANCELLED':
      return 'cancelled';
    case 'SUCCEEDED':
      return 'succeeded';
    case 'FAILED':
      return 'failed';
  }
}

/** What an error-table name means, from the engine's own table. */
export function errorMeaning(error: string | undefined): string | undefined {
  return ERROR_TABLE.find((e) => e.name === error)?.raisedWhen;
}
