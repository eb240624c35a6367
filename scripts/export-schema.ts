import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DEPLOYMENT_JSON_SCHEMA_PATH, renderDeploymentJsonSchema } from '../core/deployment/jsonSchema.ts';

/** Regenerates docs/deployment.schema.json; run after changing core/deployment/schema.ts. */
const target = fileURLToPath(new URL(`../${DEPLOYMENT_JSON_SCHEMA_PATH}`, import.meta.url));
writeFileSync(target, renderDeploymentJsonSchema());
console.log(`wrote ${target}`);
