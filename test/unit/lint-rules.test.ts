import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint, type Linter } from 'eslint';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lintConfig } from '../../eslint.config.ts';
import { cruiseArchitecture } from '../../scripts/lint/architecture.ts';

/**
 * `npm run lint` is only worth its CI time if each rule fires: these feed it small sources with one
 * known fault each, through the same configuration, and expect exactly those faults back.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The repository's configuration without type information: the focus rules need none, and it keeps this fast. */
const untyped: Linter.Config[] = [
  ...lintConfig,
  {
    languageOptions: { parserOptions: { projectService: false } },
    rules: { '@typescript-eslint/no-floating-promises': 'off', '@typescript-eslint/no-misused-promises': 'off' },
  },
];

describe('Linter: focused tests (eslint)', () => {
  const eslint = new ESLint({ cwd: ROOT, overrideConfigFile: true, overrideConfig: untyped });
  const lint = async (path: string, body: string) => {
    const source = `import { describe, it, test } from 'vitest';\n${body}\n`;
    const [result] = await eslint.lintText(source, { filePath: join(ROOT, path) });
    return (result?.messages ?? []).map((m) => ({ rule: m.ruleId, line: m.line - 1 }));
  };

  it.each([
    ['it.only', "it.only('x', () => {});", 'vitest/no-focused-tests'],
    ['describe.only', "describe.only('x', () => {});", 'vitest/no-focused-tests'],
    ['test.only', "test.only('x', () => {});", 'vitest/no-focused-tests'],
    ['it.only.each', "it.only.each([1])('x %i', () => {});", 'vitest/no-focused-tests'],
    ['fit', "fit('x', () => {});", 'no-restricted-syntax'],
    ['fdescribe', "fdescribe('x', () => {});", 'no-restricted-syntax'],
  ])('reports %s in test/', async (_name, body, rule) => {
    expect(await lint('test/unit/focused.test.ts', body)).toEqual([{ rule, line: 1 }]);
  });

  it('accepts the same file without focus, and a skipped test', async () => {
    expect(await lint('test/unit/focused.test.ts', "describe('x', () => { it('y', () => {}); it.skip('z', () => {}); });")).toEqual([]);
  });
});

describe('Linter: promises (eslint, typed)', () => {
  let base: string;
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'ctd-lint-promises-'));
    mkdirSync(join(base, 'core'));
    writeFileSync(join(base, 'tsconfig.json'), JSON.stringify({ compilerOptions: { strict: true, module: 'NodeNext', noEmit: true, lib: ['ES2023'], types: [] }, include: ['core'] }));
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it('reports a promise nobody handles, and accepts awaited, voided and caught ones', async () => {
    const source = [
      'async function flush(): Promise<void> {}',
      'export async function ok(): Promise<void> {',
      '  await flush();',
      '  void flush();',
      '  flush().catch(() => undefined);',
      '}',
      'export function lost(): void {',
      '  flush();',
      '  if (flush()) return;',
      '}',
      '',
    ].join('\n');
    const path = join(base, 'core/log.ts');
    writeFileSync(path, source);
    // The repository's rules, with type information from the scratch project instead of ours.
    const eslint = new ESLint({ cwd: base, overrideConfigFile: true, overrideConfig: [...lintConfig, { languageOptions: { parserOptions: { tsconfigRootDir: base } } }] });
    const [result] = await eslint.lintFiles([path]);
    expect(result?.messages.map((m) => ({ rule: m.ruleId, line: m.line }))).toEqual([
      { rule: '@typescript-eslint/no-floating-promises', line: 8 },
      { rule: '@typescript-eslint/no-misused-promises', line: 9 },
    ]);
  });
});

describe('Linter: import graph (dependency-cruiser)', () => {
  let base: string;
  const write = (path: string, text: string) => {
    mkdirSync(dirname(join(base, path)), { recursive: true });
    writeFileSync(join(base, path), text);
  };

  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), 'ctd-lint-rules-'));
    // Packages resolve into node_modules/ as they do in the repository.
    symlinkSync(join(ROOT, 'node_modules'), join(base, 'node_modules'), 'dir');
    write('tsconfig.json', JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', allowImportingTsExtensions: true, noEmit: true } }));
    // A cycle closed by a type-only import, as cdk/data.ts ↔ cdk/permissions.ts was.
    write('core/a.ts', "import { b } from './b.ts';\nexport interface A { n: number }\nexport const a = b + 1;\n");
    write('core/b.ts', "import type { A } from './a.ts';\nexport const b = 1;\nexport type B = A;\n");
    // Allowed: adapters import core; cdk reads the Lambda catalog (the one deliberate exception).
    write('adapters/store.ts', "import { a } from '../core/a.ts';\nexport const store = a;\n");
    write('lambdas/catalog.ts', "import { a } from '../core/a.ts';\nexport const catalog = a;\n");
    write('cdk/stack.ts', "import { catalog } from '../lambdas/catalog.ts';\nimport { store } from '../adapters/store.ts';\nexport const stack = catalog + store;\n");
    // Violations: core importing adapters, cdk importing a handler, local importing cli, core importing the AWS SDK.
    write('core/usecase.ts', "import { store } from '../adapters/store.ts';\nexport const usecase = store;\n");
    write('lambdas/api/submit.ts', "export const handler = 1;\n");
    write('cdk/api.ts', "import { handler } from '../lambdas/api/submit.ts';\nexport const api = handler;\n");
    write('cli/main.ts', "export const main = 1;\n");
    write('local/engine.ts', "import { main } from '../cli/main.ts';\nimport { stack } from '../cdk/stack.ts';\nexport const engine = main + stack;\n");
    write('core/aws.ts', "import { DynamoDBClient } from '@aws-sdk/client-dynamodb';\nexport const client = DynamoDBClient;\n");
    write('core/handler.ts', "import type { Context } from 'aws-lambda';\nimport { parse } from 'yaml';\nexport type C = Context;\nexport const p = parse;\n");
  });
  afterAll(() => rmSync(base, { recursive: true, force: true }));

  it('reports the cycle (once), each layer violation and AWS in core, and nothing that is allowed', async () => {
    const result = await cruiseArchitecture(base, ['core', 'adapters', 'lambdas', 'cdk', 'local', 'cli']);
    const found = result.summary.violations.map((v) => ({ rule: v.rule.name, from: v.from, to: v.to })).sort((x, y) => x.from.localeCompare(y.from));
    expect(found).toEqual([
      { rule: 'layer-cdk', from: 'cdk/api.ts', to: 'lambdas/api/submit.ts' },
      { rule: 'no-circular', from: 'core/a.ts', to: 'core/b.ts' },
      { rule: 'core-no-aws', from: 'core/aws.ts', to: expect.stringMatching(/node_modules\/@aws-sdk\/client-dynamodb\//) },
      { rule: 'core-no-aws', from: 'core/handler.ts', to: expect.stringMatching(/^(node_modules\/@types\/)?aws-lambda($|\/)/) },
      { rule: 'layer-core', from: 'core/usecase.ts', to: 'adapters/store.ts' },
      { rule: 'layer-local', from: 'local/engine.ts', to: 'cli/main.ts' },
    ]);
  });
});
