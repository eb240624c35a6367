import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildRunner } from '../../local/sandbox/runnerBundle.ts';

/**
 * The runner's files (local/sandbox/runnerBundle.ts): what every runner loads at start stays small, the
 * actions and the cloud driver are files of their own, and those never hold a second copy of a module
 * the bundle has (a second StepError class would make the runner misname every failure they throw).
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
let dir: string;
let built: Awaited<ReturnType<typeof buildRunner>>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ctd-runner-split-'));
  built = await buildRunner({ root: ROOT, outdir: dir });
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const project = (inputs: string[]) => inputs.filter((f) => !f.includes('node_modules/') && !f.startsWith('ctd-'));

describe('runner bundle split', () => {
  it('loads no action, cloud driver, ssh2, yaml or full zod at start', () => {
    const bundle = built.inputs['runner-bundle.cjs']!;
    expect(bundle).toContain('sandbox/main.ts');
    for (const heavy of [/node_modules\/ssh2\//, /node_modules\/yaml\//, /node_modules\/zod\/v4\/classic\//, /^adapters\/openstack\//, /^sandbox\/actions\/run\.ts$/]) {
      expect(bundle.filter((f) => heavy.test(f)), String(heavy)).toEqual([]);
    }
  });

  it('puts each action and the cloud driver in a file of its own, which takes the shared modules from the bundle', () => {
    const onDemand = Object.keys(built.inputs).filter((f) => f !== 'runner.cjs' && f !== 'runner-bundle.cjs');
    expect(onDemand.sort()).toEqual(
      ['ansible', 'bastionClose', 'bastionOpen', 'cloudDrivers', 'deprovision', 'provision', 'run', 'ssh'].map((n) => `runner-${n}.cjs`).sort(),
    );
    const inBundle = new Set(project(built.inputs['runner-bundle.cjs']!));
    for (const file of onDemand) {
      expect({ file, copies: project(built.inputs[file]!).filter((f) => inBundle.has(f)) }).toEqual({ file, copies: [] });
    }
    // The error classes the runner classifies failures by come from the bundle.
    expect(built.inputs['runner-ssh.cjs']).toContain('ctd-shared:core/errors.ts');
    expect(project(built.inputs['runner-ssh.cjs']!)).not.toContain('core/errors.ts');
  });

});
