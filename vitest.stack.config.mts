import { defineConfig } from 'vitest/config';

/** `npm run test:stack`: suites that need real servers, started by scripts/test-stack.sh. */
export default defineConfig({
  test: {
    // test/db runs again here, against the PostgreSQL that VEGA_TEST_DATABASE_URL names.
    include: ['test/stack/**/*.test.ts', 'test/db/**/*.test.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // One file at a time: the database suites share one PostgreSQL database.
    fileParallelism: false,
  },
});
