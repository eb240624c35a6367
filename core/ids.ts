import { randomBytes } from 'node:crypto';

/**
 * Deployment ids sort by creation time and are valid Step Functions execution names
 * (the execution is named after its deployment): "d-" + 9 base36 time chars + 10 random hex.
 */
export function newDeploymentId(nowMs: number): string {
  return `d-${nowMs.toString(36).padStart(9, '0')}${randomBytes(5).toString('hex')}`;
}
