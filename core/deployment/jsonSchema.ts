import { z } from 'zod';
import { DeploymentSchema } from './schema.ts';

/** Where the committed schema lives; editors point at it (`# yaml-language-server: $schema=…`). */
export const DEPLOYMENT_JSON_SCHEMA_PATH = 'docs/deployment.schema.json';

/**
 * The deployment format as JSON Schema (draft 2020-12), generated from the zod model so the
 * two cannot disagree. Input side: fields with defaults are optional, as a user writes them.
 * Cross-field rules (references, cycles, bundle size) are not expressible here; the API checks them.
 */
export function deploymentJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(DeploymentSchema, { io: 'input', target: 'draft-2020-12' });
  return {
    ...schema,
    title: 'CTD Orchestrator deployment',
    description: 'A topology of networks, security groups and VMs behind a bastion, a bundle of files, and a workflow of steps.',
  };
}

/** The exact text of {@link DEPLOYMENT_JSON_SCHEMA_PATH}; a test compares it with the committed file. */
export function renderDeploymentJsonSchema(): string {
  return `${JSON.stringify(deploymentJsonSchema(), null, 2)}\n`;
}
