import vitest from '@vitest/eslint-plugin';
import type { Linter } from 'eslint';
import tseslint from 'typescript-eslint';

/**
 * ESLint checks what one file shows: focused tests, and promises left unhandled. The import graph
 * (cycles, layers, AWS in core) is scripts/lint/architecture.ts. Other rules stay off unless they
 * catch real bugs cheaply.
 */
export const lintConfig: Linter.Config[] = [
  { ignores: ['**/node_modules/', 'cdk.out/', 'console/dist/', 'coverage/', 'reports/', 'dist/', '.stryker-tmp/', 'test/artifacts/', '.ctd/'] },
  {
    files: ['**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      ecmaVersion: 2023,
      sourceType: 'module',
      // Type information for the promise rules; each file gets its nearest tsconfig (console/ has its own).
      parserOptions: { projectService: { allowDefaultProject: ['vitest.mutate.config.ts'] }, tsconfigRootDir: import.meta.dirname },
    },
    // Off: disable comments for rules this config does not enable (e.g. no-explicit-any) are documentation.
    linterOptions: { reportUnusedDisableDirectives: 'off' },
    // Only the two promise rules are on; existing `eslint-disable @typescript-eslint/…` comments name others.
    plugins: { '@typescript-eslint': tseslint.plugin as never },
    rules: {
      // A promise nobody awaits loses its rejection: an unhandled rejection ends the process (issue 10, item 9).
      '@typescript-eslint/no-floating-promises': 'error',
      // Not checksVoidReturn: it flags async DOM handlers that catch their own errors (console/).
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
    },
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
