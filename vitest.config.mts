import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // test/stack/ needs real servers (PostgreSQL, Prometheus): `npm run test:stack` runs it.
    // test/chaos/ runs for 15 minutes: `npm run test:chaos` runs it.
    exclude: ['test/stack/**', 'test/chaos/**', 'node_modules/**'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // Tests start Vega processes; on a 2-core machine two files at a time is the honest maximum.
    maxWorkers: 2,
  },
});
