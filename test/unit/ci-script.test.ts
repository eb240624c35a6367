import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

/**
 * The e2e suites skip a missing prerequisite unless CI is set (test/e2e/helpers/prerequisites.ts);
 * a CI host that does not set CI itself would then pass with the test bed broken.
 */
describe('Script: .ci/run', () => {
  it('exports CI before it runs the tests', () => {
    const lines = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8').split('\n');
    const exported = lines.findIndex((l) => /^export CI=(true|1)$/.test(l.trim()));
    const tests = lines.findIndex((l) => l.trim() === 'npm test');
    expect(exported, '.ci/run must export CI=true').toBeGreaterThanOrEqual(0);
    expect(tests).toBeGreaterThan(exported);
  });
});
