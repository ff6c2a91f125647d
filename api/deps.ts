// The types every route and helper shares: the app and what it is built from (imports nothing from the routes).
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { Redis } from "ioredis";
import type { JobProducer } from "../shared/jobs/producer.ts";
import type { Logger } from "../shared/logger.ts";
import type { ObjectStore } from "../shared/object-store.ts";
import type { PayloadClient } from "../shared/payload-client.ts";
import type { CompressionConfig } from "../shared/schemas/compression.ts";
import type { Db } from "./db/database.ts";
import type { HostDirectoryView } from "./host-directory.ts";
import type { ApiMetrics } from "./metrics/metrics.ts";
import type { Projector } from "./read-model/projector.ts";
import type { EventFeed } from "./routes/events-feed.ts";
import type { WebhookEndpoints } from "./webhooks/endpoints.ts";

export interface AppDeps {
  db: Db;
  /** Producer-role connection: commands fail at once while Redis is down. */
  redis: Redis;
  jobs: JobProducer;
  /** Applies events to the read model; commands wait on it so responses and later reads agree. */
  projector: Projector;
  log: Logger;
  apiKeys: readonly string[];
  /** API_READ_KEYS: keys that may only read (api/middleware/auth.ts readOnlyAllows). */
  readOnlyApiKeys: readonly string[];
  redisPrefix: string;
  bodyLimitBytes: number;
  jobResultTimeoutMs: number;
  redisCommandTimeoutMs: number;
  /** The server's default snapshot compression policy (SNAPSHOT_COMPRESSION_DEFAULT). */
  defaultCompression: CompressionConfig;
  /** Webhook subscriptions: SQLite rows mirrored into Redis for the delivery worker. */
  webhookEndpoints: WebhookEndpoints;
  /** Wakes live event streams (GET /events); closing it ends them at shutdown. */
  eventFeed: EventFeed;
  /** The host directory as reads present it: an in-memory copy, refreshed in the background. */
  hostDirectory: HostDirectoryView;
  /** Prometheus instruments served at GET /metrics. */
  metrics: ApiMetrics;
  /** Signed calls to hosts' payload servers (api/host-payloads.ts). */
  payloads: PayloadClient;
  /** The object store (S3_BUCKET), when there is one: exports read a stored snapshot from it. */
  objects?: ObjectStore;
  /** How long a POST's answer is replayed for the same Idempotency-Key (IDEMPOTENCY_KEY_TTL_MS). */
  idempotencyTtlMs: number;
  /** How long a POST with an Idempotency-Key runs on after its 504 (IDEMPOTENCY_DETACHED_WAIT_MS). */
  idempotencyDetachedWaitMs: number;
}

export type App = OpenAPIHono;
