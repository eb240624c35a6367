import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { synthCtdStack } from './helpers.ts';

/**
 * cfn-lint (AWS's CloudFormation linter, the resource specs of every Region) on the synthesized
 * template: no errors; warnings are printed so a reviewer sees them. CI runs on this image, where
 * cfn-lint is installed; elsewhere the test is skipped and says why.
 */

interface Finding {
  Filename: string;
  Level: 'Error' | 'Warning' | 'Informational';
  Message: string;
  Rule: { Id: string };
  Location: { Path: (string | number)[] };
}

/** The cfn-lint on PATH, else pyenv's shim; only one that answers --version counts. */
function findCfnLint(): string | undefined {
  for (const candidate of ['cfn-lint', '/root/.pyenv/shims/cfn-lint']) {
    if (candidate.startsWith('/') && !existsSync(candidate)) continue;
    if (spawnSync(candidate, ['--version'], { encoding: 'utf8' }).status === 0) return candidate;
  }
  return undefined;
}

/** Rules not applied, each with why. */
const IGNORED_RULES: Record<string, string> = {};

const cfnLint = findCfnLint();
if (!cfnLint) console.warn('cfn-lint test skipped: no cfn-lint on PATH or at /root/.pyenv/shims (pip install cfn-lint to run it)');

describe.skipIf(!cfnLint)('cfn-lint', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'ctd-cfn-lint-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const template = synthCtdStack().template.toJSON() as { Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }> };
  const stackFile = path.join(dir, 'CtdStack.template.json');
  writeFileSync(stackFile, JSON.stringify(template, null, 1));
  // A copy with one known fault, linted in the same run: proves the findings are read, not just an exit code.
  const broken = structuredClone(template);
  const alarm = Object.values(broken.Resources).find((r) => r.Type === 'AWS::CloudWatch::Alarm');
  if (alarm?.Properties) alarm.Properties.ComparisonOperator = 'GreaterThanOrEqual';
  const brokenFile = path.join(dir, 'Broken.template.json');
  writeFileSync(brokenFile, JSON.stringify(broken, null, 1));

  const lint = () => {
    const ignore = Object.keys(IGNORED_RULES);
    const run = spawnSync(cfnLint!, ['--format', 'json', '--regions', 'us-east-1', ...(ignore.length ? ['--ignore-checks', ...ignore] : []), '--', stackFile, brokenFile], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    // Exit codes are a bitmask of the levels found (2 error, 4 warning, 8 info); 1 is cfn-lint itself failing.
    if (run.status === 1 || run.error) throw new Error(`cfn-lint failed to run: ${run.error?.message ?? run.stderr}`);
    return JSON.parse(run.stdout) as Finding[];
  };
  let findings: Finding[] | undefined;
  const of = (file: string) => (findings ??= lint()).filter((f) => f.Filename === file);
  const show = (f: Finding) => `${f.Level} ${f.Rule.Id} at ${f.Location.Path.join('/')}: ${f.Message}`;

  it('finds no error in the stack\'s template (and lists its warnings)', () => {
    const stack = of(stackFile);
    const warnings = stack.filter((f) => f.Level !== 'Error');
    if (warnings.length > 0) console.log(`cfn-lint: ${warnings.length} warnings in the stack's template:\n${warnings.map(show).join('\n')}`);
    expect(stack.filter((f) => f.Level === 'Error').map(show)).toEqual([]);
  }, 600_000);

  it('reports the fault planted in a copy of it', () => {
    expect(of(brokenFile).filter((f) => f.Level === 'Error').map((f) => f.Message).join('\n')).toMatch(/GreaterThanOrEqual/);
  }, 600_000);
});
