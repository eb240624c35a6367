import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  DEPLOYMENT_JSON_SCHEMA_PATH,
  deploymentJsonSchema,
  renderDeploymentJsonSchema,
} from '../../core/deployment/jsonSchema.ts';

/** The slice of JSON Schema these tests read. */
interface ObjectSchema {
  properties: Record<string, ObjectSchema>;
  required?: string[];
  additionalProperties?: boolean;
  items?: ObjectSchema;
  oneOf?: ObjectSchema[];
  default?: unknown;
  const?: unknown;
}

describe('Function: deploymentJsonSchema', () => {
  it('matches the committed docs/deployment.schema.json (run `npx tsx scripts/export-schema.ts` after schema changes)', () => {
    const committed = readFileSync(fileURLToPath(new URL(`../../${DEPLOYMENT_JSON_SCHEMA_PATH}`, import.meta.url)), 'utf8');

    expect(committed).toBe(renderDeploymentJsonSchema());
  });

  it('rejects unknown keys, so editors flag typos as the API does', () => {
    const schema = deploymentJsonSchema() as unknown as ObjectSchema;
    const vm = schema.properties.vms!.items!;

    expect(schema.additionalProperties).toBe(false);
    expect(vm.additionalProperties).toBe(false);
  });

  it('describes what a user writes: fields with defaults are optional and show the default', () => {
    const schema = deploymentJsonSchema() as unknown as ObjectSchema;
    const bastion = schema.properties.bastion!;

    expect(schema.required).toEqual(['name', 'bastion', 'workflow']);
    expect(bastion.required).not.toContain('port');
    expect(bastion.required).not.toContain('server');
    expect(bastion.properties.server!.default).toBe('bastion');
  });

  it('offers one variant per step action', () => {
    const schema = deploymentJsonSchema() as unknown as ObjectSchema;
    const steps = schema.properties.workflow!.properties.steps!.items!;
    const actions = steps.oneOf!.map((variant) => variant.properties.action!.const);

    expect(actions).toEqual(['run', 'provision', 'deprovision', 'ssh', 'ansible']);
  });
});
