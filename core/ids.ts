import { randomBytes } from 'node:crypto';

/**
 * Deployment ids sort by creation time and are valid Step Functions execution names
 * (the execution is named after its deployment): "d-" + 9 base36 time chars + 10 random hex.
 */
export function newDeploymentId(nowMs: number): string {
  return `d-${nowMs.toString(36).padStart(9, '0')}${randomBytes(5).toString('hex')}`;
}

const DEPLOYMENT_ID = /^d-[0-9a-z]{9}[0-9a-f]{10}$/;

/** Whether a string can be a deployment id at all: anything else is "not found" before any lookup. */
export function isDeploymentId(id: string): boolean {
  return DEPLOYMENT_ID.test(id);
}

/** An id as it may appear in a message: a hostile 2 KB one is cut, not echoed. */
export function shownId(id: string): string {
  return id.length > 40 ? `${id.slice(0, 40)}…` : id;
}
