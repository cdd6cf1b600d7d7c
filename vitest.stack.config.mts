import { defineConfig } from 'vitest/config';

/** `npm run test:stack`: suites that need real servers, started by scripts/test-stack.sh. */
export default defineConfig({
  test: {
    // The database-portable suites run again here, on the PostgreSQL VEGA_TEST_DATABASE_URL names;
    // the shared-state suite runs here too, where the redis-server it needs is always installed
    // (in `npm test` it skips on a machine without one).
    include: [
      'test/stack/**/*.test.ts',
      'test/db/conversations.test.ts',
      'test/db/batch-writer.test.ts',
      'test/sessions/store.test.ts',
      'test/shared/redis.test.ts',
    ],
    testTimeout: 120_000,
    pool: 'forks',
    hookTimeout: 60_000,
    // One file at a time: the database suites share one PostgreSQL database.
    fileParallelism: false,
  },
});
