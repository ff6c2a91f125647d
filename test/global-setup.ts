// One private redis-server for the whole test run (never the machine's own); tests isolate keys by prefix.
// One PostgreSQL server (test/helpers/postgres-server.ts); tests each create their own database.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { createLogger } from "../shared/logger.ts";
import { findRedisServer, REDIS_INSTALL_HINT, startEmbeddedRedis } from "../supervisor/embedded-redis.ts";
import { startTestPostgres } from "./helpers/postgres-server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
    /** A PostgreSQL server's maintenance database URL; empty when none could be had (see postgresSkipReason). */
    postgresUrl: string;
    postgresSkipReason: string;
  }
}

export default async function setup(project: TestProject) {
  const binary = findRedisServer();
  if (!binary) throw new Error(REDIS_INSTALL_HINT);
  const dir = mkdtempSync(path.join(tmpdir(), "snapfleet-test-redis-"));
  const redis = await startEmbeddedRedis(binary, dir, createLogger("test-redis", "warn"));
  project.provide("redisUrl", redis.url);
  const postgres = await startTestPostgres();
  project.provide("postgresUrl", postgres.url);
  project.provide("postgresSkipReason", "reason" in postgres ? postgres.reason : "");
  if ("reason" in postgres) console.warn(`PostgreSQL cases will be skipped: ${postgres.reason}`);
  return async () => {
    if ("stop" in postgres) postgres.stop();
    await redis.stop(2_000);
    rmSync(dir, { recursive: true, force: true });
  };
}
