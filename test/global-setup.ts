// One private redis-server for the whole test run (never the machine's own); tests isolate keys by prefix.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { createLogger } from "../shared/logger.ts";
import { findRedisServer, REDIS_INSTALL_HINT, startEmbeddedRedis } from "../supervisor/embedded-redis.ts";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

export default async function setup(project: TestProject) {
  const binary = findRedisServer();
  if (!binary) throw new Error(REDIS_INSTALL_HINT);
  const dir = mkdtempSync(path.join(tmpdir(), "snapfleet-test-redis-"));
  const redis = await startEmbeddedRedis(binary, dir, createLogger("test-redis", "warn"));
  project.provide("redisUrl", redis.url);
  return async () => {
    await redis.stop(2_000);
    rmSync(dir, { recursive: true, force: true });
  };
}
