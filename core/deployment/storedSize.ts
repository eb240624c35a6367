import { storedLength } from './bundle.ts';
import type { DeploymentSpec } from './schema.ts';

/**
 * Limits that keep a valid deployment storable: DynamoDB refuses any item over 400 KB, and the
 * deployment item holds the whole topology and workflow (everything but the bundle), each step
 * item its own spec. A document over them is refused at submit with a 400, not a 500 at write.
 */
export const MAX_STORED_TOPOLOGY_BYTES = 300 * 1024;
export const MAX_STORED_STEP_BYTES = 64 * 1024;
/** Files beyond this many make every sandbox's bundle write slow for no use; tar them instead. */
export const MAX_BUNDLE_FILES = 1000;
/** The bundle is one item: its paths count as well as its contents. */
export const MAX_STORED_FILES_BYTES = 350 * 1024;

const bytes = (value: unknown) => Buffer.byteLength(JSON.stringify(value), 'utf8');
const kb = (n: number) => `${Math.ceil(n / 1024)} KB`;

export function storedSizeIssues(spec: DeploymentSpec): { path: string; message: string }[] {
  const issues: { path: string; message: string }[] = [];
  spec.workflow.steps.forEach((step, i) => {
    const size = bytes(step);
    if (size > MAX_STORED_STEP_BYTES) {
      issues.push({
        path: `workflow.steps[${i}]`,
        message: `step "${step.id}" is ${kb(size)} once stored, over the ${kb(MAX_STORED_STEP_BYTES)} limit: put long scripts in files and run them`,
      });
    }
  });
  const { files: _bundle, ...topology } = spec;
  const size = bytes(topology);
  if (size > MAX_STORED_TOPOLOGY_BYTES) {
    issues.push({
      path: 'workflow',
      message: `the deployment without its files is ${kb(size)} once stored, over the ${kb(MAX_STORED_TOPOLOGY_BYTES)} limit: put long scripts in files`,
    });
  }
  const count = Object.keys(spec.files).length;
  if (count > MAX_BUNDLE_FILES) {
    issues.push({ path: 'files', message: `${count} files, over the ${MAX_BUNDLE_FILES}-file limit: pack them into an archive` });
  }
  const filesBytes = Object.entries(spec.files).reduce((n, [path, content]) => n + Buffer.byteLength(path) + storedLength(content), 0);
  if (filesBytes > MAX_STORED_FILES_BYTES) {
    issues.push({ path: 'files', message: `paths and contents are ${kb(filesBytes)} once stored, over the ${kb(MAX_STORED_FILES_BYTES)} limit` });
  }
  return issues;
}
