import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readBundle, readFilesDir } from '../../cli/bundle.ts';
import { CliError } from '../../cli/errors.ts';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'ctd-bundle-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const yamlDoc = `name: hello
bastion: { address: 127.0.0.1, user: ctd, securityGroup: bastion }
files:
  inline.txt: from yaml
workflow:
  steps:
    - { id: hi, action: run, command: echo hi }
`;

describe('Function: readBundle', () => {
  it('parses YAML and keeps inline files when there is no files/ directory', async () => {
    await writeFile(path.join(dir, 'deployment.yaml'), yamlDoc);
    const bundle = await readBundle(path.join(dir, 'deployment.yaml'));
    expect(bundle.name).toBe('hello');
    expect(bundle.files).toEqual({ 'inline.txt': 'from yaml' });
  });

  it('parses JSON', async () => {
    await writeFile(path.join(dir, 'd.json'), JSON.stringify({ name: 'j', workflow: { steps: [] } }));
    expect((await readBundle(path.join(dir, 'd.json'))).name).toBe('j');
  });

  it('merges files/ recursively with "/"-separated relative paths', async () => {
    await writeFile(path.join(dir, 'deployment.yaml'), yamlDoc);
    await mkdir(path.join(dir, 'files', 'app', 'static'), { recursive: true });
    await writeFile(path.join(dir, 'files', 'app', 'server.py'), 'print("hi")\n');
    await writeFile(path.join(dir, 'files', 'app', 'static', 'index.html'), '<h1>hi</h1>');
    await writeFile(path.join(dir, 'files', 'site.yml'), '- hosts: all\n');
    const bundle = await readBundle(path.join(dir, 'deployment.yaml'));
    expect(bundle.files).toEqual({
      'inline.txt': 'from yaml',
      'app/server.py': 'print("hi")\n',
      'app/static/index.html': '<h1>hi</h1>',
      'site.yml': '- hosts: all\n',
    });
  });

  it('refuses a path given both inline and in files/, naming it', async () => {
    await writeFile(path.join(dir, 'deployment.yaml'), yamlDoc);
    await mkdir(path.join(dir, 'files'));
    await writeFile(path.join(dir, 'files', 'inline.txt'), 'from dir');
    const err = await readBundle(path.join(dir, 'deployment.yaml')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as Error).message).toContain('"inline.txt"');
  });

  it('reports invalid YAML and a missing file as user errors', async () => {
    await writeFile(path.join(dir, 'bad.yaml'), 'name: [unclosed');
    await expect(readBundle(path.join(dir, 'bad.yaml'))).rejects.toThrow(/invalid YAML/);
    await expect(readBundle(path.join(dir, 'missing.yaml'))).rejects.toThrow(/cannot read .*missing\.yaml: ENOENT/);
  });

  it('refuses a document that is not a mapping', async () => {
    await writeFile(path.join(dir, 'list.yaml'), '- a\n- b\n');
    await expect(readBundle(path.join(dir, 'list.yaml'))).rejects.toThrow(/must be a mapping/);
  });
});

describe('Function: readFilesDir', () => {
  it('is empty when the directory does not exist', async () => {
    expect(await readFilesDir(path.join(dir, 'nope'))).toEqual({});
  });

  it('sends UTF-8 files as text and any other file as base64, byte-exact', async () => {
    const bytes = Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xff, 0xfe, 0xc3, 0x28]);
    await mkdir(path.join(dir, 'files'), { recursive: true });
    await writeFile(path.join(dir, 'files', 'app.tar.gz'), bytes);
    await writeFile(path.join(dir, 'files', 'note.txt'), 'héllo ✓\n');
    expect(await readFilesDir(path.join(dir, 'files'))).toEqual({
      'app.tar.gz': { content: bytes.toString('base64'), encoding: 'base64' },
      'note.txt': 'héllo ✓\n',
    });
  });
});
