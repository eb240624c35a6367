import type { StepAction, SystemStepId } from '../../core/deployment/schema.ts';
import { ansible } from './ansible.ts';
import { bastionClose } from './bastionClose.ts';
import { bastionOpen } from './bastionOpen.ts';
import { deprovision } from './deprovision.ts';
import { provision } from './provision.ts';
import { run } from './run.ts';
import { ssh } from './ssh.ts';
import type { Action } from './types.ts';

/** Every action a step can name, and the engine's system actions around the workflow. */
export const ACTIONS: Record<StepAction | SystemStepId, Action> = {
  run,
  provision,
  deprovision,
  ssh,
  ansible,
  'bastion-open': bastionOpen,
  'bastion-close': bastionClose,
};
