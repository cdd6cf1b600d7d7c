import { defineConfig } from 'vitest/config';

/**
 * `npm run test:chaos`: faults, load, crashes, hostile input, auth and a soak, each against a
 * real Vega process. One file at a time: the load and soak phases measure the machine, and two
 * of them at once would measure each other.
 */
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    // docs/reliability.md is written by this reporter; CI adds its JSON reporter after these.
    reporters: ['default', './test/chaos/reporter.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
