import type { DiagramSpec } from './diagram.ts';
import { DEPLOYMENT_LIFECYCLE } from './deployment.ts';
import { FINAL_STEP_STATUSES, STEP_LIFECYCLE } from './step.ts';
import { FINAL_DEPLOYMENT_STATUSES } from '../model.ts';

/** The two lifecycles docs/ARCHITECTURE.md shows (scripts/lifecycle-diagrams.ts writes them). */
export const LIFECYCLE_DIAGRAMS: readonly DiagramSpec[] = [
  { name: 'deployment', lifecycle: DEPLOYMENT_LIFECYCLE, initial: 'PENDING', finals: FINAL_DEPLOYMENT_STATUSES },
  { name: 'step', lifecycle: STEP_LIFECYCLE, initial: 'waiting', finals: FINAL_STEP_STATUSES },
];
