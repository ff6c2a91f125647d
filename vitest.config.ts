import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "api/**/*.test.ts",
      "workers/**/*.test.ts",
      "shared/**/*.test.ts",
      "supervisor/**/*.test.ts",
      "test/**/*.test.ts",
      "cli/**/*.test.ts",
      "bench/lib/**/*.test.ts",
    ],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests boot real QEMU guests and Redis servers on 2 cores: run files one or two at a time.
    fileParallelism: true,
    maxWorkers: 2,
    pool: "forks",
    globalSetup: ["test/global-setup.ts"],
  },
});
