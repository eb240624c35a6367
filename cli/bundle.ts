import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { bundleFileOf, type Bundle } from '../core/deployment/bundle.ts';
import { CliError, EXIT } from './errors.ts';

/**
 * Reads a deployment file (YAML or JSON) and merges the `files/` directory beside it into the
 * bundle's `files`, so users keep scripts and playbooks as real files instead of inline strings.
 * The result is sent as is: the server validates it and names any bad field.
 */

export const FILES_DIR = 'files';

export async function readBundle(file: string): Promise<Record<string, unknown>> {
  const absolute = path.resolve(file);
  let text: string;
  try {
    text = await readFile(absolute, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const doc = await parseDocument(text, absolute);
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new CliError(`${file}: a deployment must be a mapping (name, bastion, workflow, …)`);
  }
  const deployment = doc as Record<string, unknown>;
  const dir = path.join(path.dirname(absolute), FILES_DIR);
  const fromDir = await readFilesDir(dir);
  if (Object.keys(fromDir).length === 0) return deployment;

  const inline = deployment.files ?? {};
  if (typeof inline !== 'object' || inline === null || Array.isArray(inline)) {
    throw new CliError(`${file}: files must be a mapping of path to content`);
  }
  const merged: Record<string, unknown> = { ...(inline as Record<string, unknown>) };
  for (const [rel, content] of Object.entries(fromDir)) {
    if (Object.hasOwn(merged, rel)) {
      throw new CliError(`bundle file "${rel}" is given both inline in ${file} and in ${path.join(path.dirname(file), FILES_DIR, rel)}`);
    }
    merged[rel] = content;
  }
  return { ...deployment, files: merged };
}

/** JSON by extension (precise error positions); anything else through YAML, a superset of JSON. */
async function parseDocument(text: string, file: string): Promise<unknown> {
  if (file.toLowerCase().endsWith('.json')) {
    try {
      return JSON.parse(text) as unknown;
    } catch (err) {
      throw new CliError(`${file}: invalid JSON: ${(err as Error).message}`);
    }
  }
  // Loaded on use so `ctd --help` and the read-only commands do not pay for the YAML parser.
  const { parse } = await import('yaml');
  try {
    return parse(text) as unknown;
  } catch (err) {
    throw new CliError(`${file}: invalid YAML: ${(err as Error).message}`);
  }
}

/**
 * Every regular file under `dir`, keyed by its path relative to `dir` with `/` separators
 * (the bundle's path form on every OS). A missing directory is an empty bundle. UTF-8 files are
 * sent as text, others as `{ content, encoding: "base64" }`.
 */
export async function readFilesDir(dir: string): Promise<Bundle> {
  try {
    if (!(await stat(dir)).isDirectory()) return {};
  } catch {
    return {};
  }
  const files: Bundle = {};
  const walk = async (current: string): Promise<void> => {
    const entries = await readdir(current, { withFileTypes: true });
    entries.sort((a, b) => a.name.localeCompare(b.name));
    for (const entry of entries) {
      const full = path.join(current, entry.name);
      // Symlinks are followed once through stat, so a linked file counts but a linked loop cannot recurse forever.
      const isDir = entry.isDirectory();
      const isFile = entry.isFile() || (entry.isSymbolicLink() && (await stat(full).catch(() => undefined))?.isFile());
      if (isDir) await walk(full);
      // Text stays readable in the document; anything not UTF-8 (a tarball) goes as base64, byte-exact.
      else if (isFile) files[path.relative(dir, full).split(path.sep).join('/')] = bundleFileOf(await readFile(full));
    }
  };
  try {
    await walk(dir);
  } catch (err) {
    throw new CliError(`cannot read ${dir}: ${(err as Error).message}`, EXIT.rejected);
  }
  return files;
}
