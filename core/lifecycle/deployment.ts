import type { DeploymentRecord, DeploymentStatus } from '../model.ts';
import type { Transition } from './types.ts';

type DeploymentTransition = Transition<DeploymentStatus, keyof DeploymentRecord>;

/**
 * The deployment lifecycle. Only Cleanup's DeleteSecrets, the safety net and a failed start
 * make a deployment final; once final it never changes again.
 */
export const DEPLOYMENT_LIFECYCLE = {
  start: { from: ['PENDING'], to: 'RUNNING', by: ['lambda'], when: 'Prepare: the execution started' },
  'start-failed': { from: ['PENDING'], to: 'FAILED', by: ['submit'], when: 'the execution could not be started' },
  cancel: { from: ['PENDING', 'RUNNING'], to: 'CANCELLING', by: ['cancel'], when: 'the user cancelled; Cleanup still runs' },
  succeed: { from: ['RUNNING'], to: 'SUCCEEDED', by: ['lambda'], when: 'DeleteSecrets: every step succeeded and bastion access is closed' },
  fail: {
    from: ['PENDING', 'RUNNING', 'CANCELLING'],
    to: 'FAILED',
    by: ['lambda'],
   
    when: 'DeleteSecrets: a step failed, the execution caught an error, or closing bastion access failed',
  },
  'end-cancelled': { from: ['CANCELLING'], to: 'CANCELLED', by: ['lambda'], when: 'DeleteSecrets after a cancel' },
  'execution-ended': {
    from: ['PENDING', 'RUNNING', 'CANCELLING'],
    to: 'FAILED',
    by: ['safety-net'],
   
    when: 'the execution ended outside Cleanup (stopped, timed out, the engine died)',
  },
} as const satisfies Record<string, DeploymentTransition>;

export type DeploymentTransitionName = keyof typeof DEPLOYMENT_LIFECYCLE;
