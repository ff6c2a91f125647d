// One private redis-server for the whole test run (never the machine's own); tests isolate keys by prefix.
// One PostgreSQL server (test/helpers/postgres-server.ts); tests each create their own database.
// One Ceph cluster with its S3 gateway (test/helpers/ceph-cluster.ts); tests each use a bucket of their own.
// With CI set, a missing machine part (PostgreSQL, QEMU, Chromium, root) fails the run here, named.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { createLogger } from "../shared/logger.ts";
import { findRedisServer, REDIS_INSTALL_HINT, startEmbeddedRedis } from "../supervisor/embedded-redis.ts";
import { startCephCluster } from "./helpers/ceph-cluster.ts";
import { IN_CI, type MachinePart, missingPartMessage, probeLocalParts } from "./helpers/machine-parts.ts";
import { startTestPostgres } from "./helpers/postgres-server.ts";

declare module "vitest" {
  export interface ProvidedContext {
    redisUrl: string;
    /** A PostgreSQL server's maintenance database URL; empty when none could be had (see missingParts.postgres). */
    postgresUrl: string;
    /** The test run's S3 store (one Ceph cluster, test/helpers/ceph-cluster.ts); empty strings when there is none. */
    s3: { endpoint: string; region: string; accessKeyId: string; secretAccessKey: string };
    /** Why each machine part is missing, "" when present (test/helpers/needs.ts skips on it outside CI). */
    missingParts: Record<MachinePart, string>;
  }
}

export default async function setup(project: TestProject) {
  const binary = findRedisServer();
  if (!binary) throw new Error(REDIS_INSTALL_HINT);
  const local = await probeLocalParts();
  const dir = mkdtempSync(path.join(tmpdir(), "snapfleet-test-redis-"));
  const redis = await startEmbeddedRedis(binary, dir, createLogger("test-redis", "warn"));
  const postgres = await startTestPostgres();
  const ceph = await startCephCluster().catch((error: Error) => ({ reason: error.message }));
  const teardown = async () => {
    if ("stop" in ceph) await ceph.stop();
    if ("stop" in postgres) postgres.stop();
    await redis.stop(2_000);
    rmSync(dir, { recursive: true, force: true });
  };
  const missingParts = {
    ...local,
    postgres: "reason" in postgres ? postgres.reason : "",
    ceph: "reason" in ceph ? ceph.reason : "",
  };
  const messages = (Object.entries(missingParts) as Array<[MachinePart, string]>)
    .filter(([, reason]) => reason !== "")
    .map(([part, reason]) => missingPartMessage(part, reason));
  if (IN_CI && messages.length > 0) {
    await teardown();
    throw new Error(`CI is set and the machine lacks what the suite needs:\n- ${messages.join("\n- ")}`);
  }
  for (const message of messages) console.warn(`cases needing it are skipped: ${message}`);
  project.provide("redisUrl", redis.url);
  project.provide("postgresUrl", postgres.url);
  project.provide("missingParts", missingParts);
  project.provide(
    "s3",
    "reason" in ceph
      ? { endpoint: "", region: "", accessKeyId: "", secretAccessKey: "" }
      : {
          endpoint: ceph.endpoint,
          region: ceph.region,
          accessKeyId: ceph.accessKeyId,
          secretAccessKey: ceph.secretAccessKey,
        },
  );
  return teardown;
}
