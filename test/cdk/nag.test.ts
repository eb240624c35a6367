import { Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { describe, expect, it } from 'vitest';
import { CtdStack } from '../../cdk/stack.ts';
import { testApp } from './helpers.ts';

describe('cdk-nag: AwsSolutions', () => {
  const stack = new CtdStack(testApp(), 'CtdNag');

  it('reports no unacknowledged error', () => {
    const report = new AwsSolutionsChecks().validateScope(stack);
    const errors = report.violations
      .filter((v) => v.severity === 'error')
      .map((v) => `${v.ruleName}: ${v.violatingResources.map((r) => JSON.stringify(r)).join(', ')}`);
    expect(errors).toEqual([]);
  });

  it('gives every acknowledgement a specific reason', () => {
    const acks = stack.node
      .findAll()
      .flatMap((c) => c.node.metadata)
      .filter((m) => m.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((m) => Object.entries(m.data as Record<string, string>))
      // aws-cdk-lib acknowledges some of its own CloudFormation-Validate findings; those are not ours.
      .filter(([id]) => id.includes('AwsSolutions-'));
    expect(acks.length).toBeGreaterThan(0);
    for (const [id, reason] of acks) {
      expect(reason.length, id).toBeGreaterThan(40);
    }
    // One reason per distinct rule: no blanket text pasted over unrelated findings.
    const reasonsByRule = new Map(acks.map(([id, reason]) => [id.replace(/\[.*$/, ''), reason]));
    const distinctReasons = new Set(acks.map(([, reason]) => reason));
    expect(distinctReasons.size).toBeGreaterThanOrEqual(reasonsByRule.size);
  });
});
