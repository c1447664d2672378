import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/setup/postgres.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Battle tests start servers and hammer Postgres; two files at a time keeps a 2-core machine honest.
    maxWorkers: 2,
  },
});
