import type { StepAction, SystemStepId } from '../../core/deployment/schema.ts';
import type { Action } from './types.ts';

/**
 * Every action a step can name, and the engine's system actions around the workflow. Loaded on
 * demand: a `run` step's sandbox never loads the SSH library, YAML or ansible support.
 */
export const ACTIONS: Record<StepAction | SystemStepId, () => Promise<Action>> = {
  run: async () => (await import('./run.ts')).run,
  provision: async () => (await import('./provision.ts')).provision,
  deprovision: async () => (await import('./deprovision.ts')).deprovision,
  ssh: async () => (await import('./ssh.ts')).ssh,
  ansible: async () => (await import('./ansible.ts')).ansible,
  'bastion-open': async () => (await import('./bastionOpen.ts')).bastionOpen,
  'bastion-close': async () => (await import('./bastionClose.ts')).bastionClose,
};
