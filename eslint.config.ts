import vitest from '@vitest/eslint-plugin';
import type { Linter } from 'eslint';
import tseslint from 'typescript-eslint';

/**
 * ESLint checks what one file shows: focused tests. The import graph (cycles, layers, AWS in core)
 * is scripts/lint/architecture.ts. Other rules stay off unless they catch real bugs cheaply.
 */
export const lintConfig: Linter.Config[] = [
  { ignores: ['**/node_modules/', 'cdk.out/', 'console/dist/', 'coverage/', 'reports/', 'dist/', '.stryker-tmp/', 'test/artifacts/', '.ctd/'] },
  {
    files: ['**/*.ts'],
    languageOptions: { parser: tseslint.parser, ecmaVersion: 2023, sourceType: 'module' },
    // Off: disable comments for rules this config does not enable (e.g. no-explicit-any) are documentation.
    linterOptions: { reportUnusedDisableDirectives: 'off' },
    // Registered, not enabled: existing `eslint-disable @typescript-eslint/…` comments must name a known rule.
    plugins: { '@typescript-eslint': tseslint.plugin as never },
  },
  {
    files: ['test/**/*.ts'],
    plugins: { vitest: vitest as never },
    rules: {
      'vitest/no-focused-tests': ['error', { fixable: false }],
      // Jasmine-style focus: vitest does not define these, but a habit may still type them.
      'no-restricted-syntax': ['error', { selector: 'CallExpression[callee.name=/^f(it|describe)$/]', message: 'Focused tests (fit, fdescribe) are not allowed.' }],
    },
  },
];

export default lintConfig;
