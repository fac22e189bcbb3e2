import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration files use their own stream keys and schemas, so files may run in parallel;
    // two at a time keeps timing-sensitive ones honest on a 2-core machine.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
