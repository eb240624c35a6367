import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorName } from '../../../../core/errors.ts';
import { classifyPlaybookResult, parseReport, summarizeStats } from '../../../../sandbox/ansible/classify.ts';

/** Outputs captured from real ansible-playbook 2.14 runs against the netns test bed. */
function fixture(name: string): { exitCode: number; stdout: string; stderr: string } {
  return JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', `${name}.json`), 'utf8')) as { exitCode: number; stdout: string; stderr: string };
}
const classify = (name: string) => {
  const f = fixture(name);
  return classifyPlaybookResult(f.exitCode, f.stdout, f.stderr);
};

describe('Function: classifyPlaybookResult', () => {
  it('accepts a successful run', () => {
    expect(classify('ok')).toBeUndefined();
  });

  it('names the failed task, host and message on a task failure (exit 2), ignoring tolerated failures', () => {
    const e = classify('task-failed');
    expect(e?.errorName).toBe(ErrorName.StepFailed);
    expect(e?.message).toBe('task "Break on purpose" failed on web1: broken (rc 3)');
  });

  it('reports the failing item of a loop', () => {
    const e = classify('loop-failed');
    expect(e?.errorName).toBe(ErrorName.StepFailed);
    expect(e?.message).toMatch(/^task "Loop" failed on web1: /);
  });

  it('classifies exit 4 with unreachable hosts in the stats as Ctd.AnsibleUnreachable', () => {
    const e = classify('unreachable');
    expect(e?.errorName).toBe(ErrorName.AnsibleUnreachable);
    expect(e?.message).toBe('unreachable: web2');
  });

  it('classifies exit 4 from a syntax error (no stats) as Ctd.StepFailed with ansible\'s ERROR! line', () => {
    const e = classify('syntax-error');
    expect(e?.errorName).toBe(ErrorName.StepFailed);
    expect(e?.message).toMatch(/^ansible-playbook exited 4: ERROR! We were unable to read either as JSON nor YAML/);
  });

  it('does not call unreachable hosts AnsibleUnreachable unless ansible exited 4', () => {
    const f = fixture('unreachable');
    expect(classifyPlaybookResult(2, f.stdout, f.stderr)?.errorName).toBe(ErrorName.StepFailed);
  });

  it('reports a killed ansible-playbook as Ctd.StepFailed', () => {
    expect(classifyPlaybookResult(null, '', '')?.message).toBe('ansible-playbook was killed');
  });

  it('ignores progress lines on stderr when quoting the error', () => {
    const e = classifyPlaybookResult(1, '', 'CTD-PROGRESS {"text":"PLAY [x]"}\nERROR! the playbook could not be found\n');
    expect(e?.message).toBe('ansible-playbook exited 1: ERROR! the playbook could not be found');
  });
});

describe('Function: summarizeStats', () => {
  it('keeps the per-host counters the step output shows', () => {
    expect(summarizeStats(parseReport(fixture('unreachable').stdout))).toEqual({
      web1: { ok: 1, changed: 0, failures: 0, unreachable: 0 },
      web2: { ok: 0, changed: 0, failures: 0, unreachable: 1 },
    });
  });
});
