import { defineConfig } from 'vitest/config';
import base from './vitest.config.ts';

/**
 * The tests the mutation run (`npm run mutate`) executes per mutant: those that run core/ and
 * sandbox/actions/ in the test's own process. Stryker activates a mutant only in that process, so
 * suites that reach this code through a sandbox child process (the engine-* suites) could not kill
 * one, and would only cost time; so would suites that only pass core/ types through (cli, adapters).
 * (mergeConfig would append to base's include, not replace it.)
 */
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: [
      'test/unit/{asl,cloudInit,dag,deploymentKey,jsonSchema,runner,stepUser,usecases,validate}.test.ts',
      'test/unit/sandbox/**/*.test.ts',
      'test/integration/actions-ssh.test.ts',
      'test/e2e/step-user.test.ts',
    ],
  },
});
