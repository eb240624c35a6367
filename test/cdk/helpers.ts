import { App, Stack, type CfnElement } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, onTestFinished } from 'vitest';
import { REPO_ROOT } from '../../cdk/functions.ts';
import { CtdStack } from '../../cdk/stack.ts';

/** The feature flags and defaults `cdk synth` applies, so tests see the template synth produces. */
function cdkJsonContext(): Record<string, unknown> {
  return JSON.parse(readFileSync(path.join(REPO_ROOT, 'cdk.json'), 'utf8')).context;
}

/**
 * An App with `cdk synth`'s context and Lambda bundling skipped (bundling is covered once, in
 * bundling.test.ts). It synthesizes into its own temporary directory and removes it after the
 * test that made it, or after the file's tests when made while the file is collected (a bare App
 * would leave a cdk.out* in tmpdir, and an afterAll registered inside a test never runs).
 */
export function testApp(context: Record<string, unknown> = {}): App {
  const outdir = mkdtempSync(path.join(tmpdir(), 'ctd-cdk-'));
  const remove = () => rmSync(outdir, { recursive: true, force: true });
  try {
    onTestFinished(remove);
  } catch {
    // Not inside a test: the file is being collected (not a hook either: an afterAll added by a hook never runs).
    afterAll(remove);
  }
  return new App({ outdir, context: { ...cdkJsonContext(), 'aws:cdk:bundling-stacks': [], ...context } });
}

/** The whole stack, synthesized as `cdk synth` would but without bundling. */
export function synthCtdStack(context: Record<string, unknown> = {}): { stack: CtdStack; template: Template } {
  const app = testApp(context);
  const stack = new CtdStack(app, 'CtdTest');
  return { stack, template: Template.fromStack(stack) };
}

export function logicalId(construct: IConstruct): string {
  const element = (construct.node.defaultChild ?? construct) as CfnElement;
  return Stack.of(element).getLogicalId(element);
}

export interface PolicyStatementJson {
  Sid?: string;
  Effect: string;
  Action: string | string[];
  Resource?: unknown;
  Principal?: unknown;
  Condition?: Record<string, Record<string, unknown>>;
}

export function actionsOf(statement: PolicyStatementJson): string[] {
  return Array.isArray(statement.Action) ? statement.Action : [statement.Action];
}

/** Statements of every IAM policy attached to the role with this logical id. */
export function roleStatements(template: Template, roleLogicalId: string): PolicyStatementJson[] {
  const policies = template.findResources('AWS::IAM::Policy');
  return Object.values(policies)
    .filter((p) => JSON.stringify(p.Properties.Roles).includes(`"${roleLogicalId}"`))
    .flatMap((p) => p.Properties.PolicyDocument.Statement as PolicyStatementJson[]);
}
