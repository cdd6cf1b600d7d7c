import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/**
 * `npm run test:chaos`: faults, load, crashes, hostile input, auth and a soak, each against a
 * real Vega process. One file at a time: the load and soak phases measure the machine, and two
 * of them at once would measure each other.
 */
export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    // docs/reliability.md is written by this reporter; CI adds its JSON reporter after these. Named
    // by absolute path: vitest resolved the relative one in the enclosing checkout when this one
    // is a copy inside it (CI's Node 24 copy, .ci-node24/).
    reporters: ['default', fileURLToPath(new URL('./test/chaos/reporter.ts', import.meta.url))],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 60_000,
  },
});
