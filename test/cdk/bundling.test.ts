import { App, Stack } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HandlerFunction } from '../../cdk/functions.ts';

// The other CDK tests skip bundling for speed; this one proves the local esbuild path works.
describe('Construct: HandlerFunction', () => {
  const outdir = mkdtempSync(path.join(tmpdir(), 'ctd-cdk-bundle-'));
  afterAll(() => rmSync(outdir, { recursive: true, force: true }));

  it('bundles a handler to one ESM file with local esbuild, no Docker', () => {
    const app = new App({ outdir });
    const stack = new Stack(app, 'Bundle');
    new HandlerFunction(stack, 'Get', {
      entry: 'lambdas/api/get.ts',
      environment: {},
      logRetention: logs.RetentionDays.ONE_DAY,
    });
    const assembly = app.synth();
    const assets = Object.values(
      JSON.parse(readFileSync(path.join(assembly.directory, 'Bundle.assets.json'), 'utf8')).files as Record<
        string,
        { source: { path: string } }
      >,
    );
    const bundle = assets
      .map((a) => path.join(assembly.directory, a.source.path, 'index.mjs'))
      .find((p) => existsSync(p));
    expect(bundle).toBeDefined();
    const code = readFileSync(bundle!, 'utf8');
    expect(code).toMatch(/createRequire/);
    expect(code).toMatch(/export\s*\{[^}]*handler/);
  });
});
