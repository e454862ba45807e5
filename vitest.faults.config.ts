import { defineConfig } from 'vitest/config';

/**
 * The fault-injection suite (`npm run test:faults`), not part of `npm test`: each scenario starts
 * real daemon processes against a private PostgreSQL and Redis (temp directory, free loopback
 * ports) and loopback sinks, injects a fault and checks the sinks and the database. Files run one
 * at a time: they kill and restart processes and measure on a small machine.
 */
export default defineConfig({
  test: {
    include: ['test/faults/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 20 * 60_000,
    hookTimeout: 120_000,
    reporters: ['verbose'],
  },
});
