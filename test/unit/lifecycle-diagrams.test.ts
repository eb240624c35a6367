import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { DEPLOYMENT_LIFECYCLE } from '../../core/lifecycle/deployment.ts';
import { mermaidOf, withDiagrams } from '../../core/lifecycle/diagram.ts';
import { LIFECYCLE_DIAGRAMS } from '../../core/lifecycle/diagrams.ts';
import { STEP_LIFECYCLE } from '../../core/lifecycle/step.ts';
import { FINAL_DEPLOYMENT_STATUSES } from '../../core/model.ts';

const DOC = new URL('../../docs/ARCHITECTURE.md', import.meta.url);

describe('docs/ARCHITECTURE.md lifecycle diagrams', () => {
  it('show exactly what core/lifecycle generates (run `npx tsx scripts/lifecycle-diagrams.ts` after changing a lifecycle)', async () => {
    const doc = await readFile(DOC, 'utf8');
    expect(doc).toBe(withDiagrams(doc, LIFECYCLE_DIAGRAMS));
  });

  it('are told apart from a lifecycle that changed', async () => {
    const doc = await readFile(DOC, 'utf8');
    const changed = LIFECYCLE_DIAGRAMS.map((spec) =>
      spec.name === 'deployment' ? { ...spec, lifecycle: { ...spec.lifecycle, start: { ...DEPLOYMENT_LIFECYCLE.start, from: ['CANCELLING'] } } } : spec,
    );
    const regenerated = withDiagrams(doc, changed);
    expect(regenerated).not.toBe(doc);
    expect(regenerated).toContain('CANCELLING --> RUNNING: start (lambda)');
  });

  it('name the block a document lacks', () => {
    expect(() => withDiagrams('# no markers here\n', LIFECYCLE_DIAGRAMS)).toThrow(/lifecycle:deployment:begin/);
  });

  it('draw one edge per starting status, labelled with the transition and who fires it', () => {
    const text = mermaidOf(LIFECYCLE_DIAGRAMS.find((d) => d.name === 'step')!);
    expect(text).toContain('waiting --> running: release (lambda)');
    expect(text).toContain('running --> aborted: abort (lambda, safety-net)');
    expect(text.split('\n').filter((l) => l.includes(': fail (lambda)'))).toHaveLength(STEP_LIFECYCLE.fail.from.length);
  });
});

describe('Lifecycle tables', () => {
  it('never lead a deployment out of a final status', () => {
    for (const [name, t] of Object.entries(DEPLOYMENT_LIFECYCLE)) {
      expect(t.from.filter((s) => FINAL_DEPLOYMENT_STATUSES.includes(s)), name).toEqual([]);
    }
  });

  it('leave a step that was skipped, aborted or cancelled there for good', () => {
    for (const [name, t] of Object.entries(STEP_LIFECYCLE)) {
      expect(t.from.filter((s) => ['skipped', 'aborted', 'cancelled'].includes(s)), name).toEqual([]);
    }
  });
});
