import { defineConfig } from 'vitest/config';

// Two projects: fast unit tests on in-memory doubles, and end-to-end tests that need root,
// network namespaces, a real TUN and real processes (run one file at a time: they share the kernel).
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/e2e/**'],
          // fast-check runs from FC_SEED or a fixed seed (printed by .ci/run, rotated by scripts/soak-fuzz.sh).
          setupFiles: ['test/support/fc-seed.ts'],
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          testTimeout: 120_000,
          hookTimeout: 60_000,
          fileParallelism: false,
          pool: 'forks',
        },
      },
    ],
  },
});
