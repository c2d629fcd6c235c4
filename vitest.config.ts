import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    // Lock tests hold real locks for seconds at a time.
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
