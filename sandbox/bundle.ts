import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { bundleFileBytes, type Bundle } from '../core/deployment/bundle.ts';
import { ErrorName, StepError } from '../core/errors.ts';

/**
 * Writes the deployment's bundle under `dir`. Validation already refused absolute paths and "..";
 * this refuses them again, because a sandbox writing outside its own directory must be impossible.
 */
export async function writeBundle(dir: string, files: Bundle): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    const rel = normalize(path);
    if (isAbsolute(rel) || rel === '..' || rel.startsWith(`..${sep}`)) {
      throw new StepError(ErrorName.StepFailed, `bundle path "${path}" escapes the bundle`);
    }
    const target = join(dir, rel);
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, bundleFileBytes(content));
  }
}
