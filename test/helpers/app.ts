// An in-process API app on real parts: a SQLite file in a temp dir or a PostgreSQL database, and the test Redis
// (or a dead one). Two apps on one prefix and database are two replicas of one service.
import { randomBytes } from "node:crypto";
import Hypeman from "@onkernel/hypeman";
import type { Db } from "../../api/db/database.ts";
import type { DialectName } from "../../api/db/dialect.ts";
import type { App, AppDeps } from "../../api/deps.ts";
import type { Projector } from "../../api/read-model/projector.ts";
import type { EventFeed } from "../../api/routes/events-feed.ts";
import { startApiRuntime } from "../../api/runtime.ts";
import type { WebhookEndpoints } from "../../api/webhooks/endpoints.ts";
import { parseConfig } from "../../shared/config.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import { createLogger } from "../../shared/logger.ts";
import { waitForRedisReady } from "../../shared/redis.ts";
import { tempDir, testRedisUrl, uniquePrefix } from "./fixtures.ts";
import { createTestDatabase } from "./postgres.ts";

export const TEST_API_KEY = "test-key-0123456789abcdef";

export interface TestApp {
  app: App;
  /** What the routes run with (for calling API internals on the same app). */
  deps: AppDeps;
  db: Db;
  jobs: JobProducer;
  webhookEndpoints: WebhookEndpoints;
  eventFeed: EventFeed;
  /** The key sealing webhook secrets: a webhook worker under test needs the same. */
  secretKey: Buffer;
  projector: Projector;
  prefix: string;
  redisUrl: string;
  /** The PostgreSQL database's URL, when the read model is there. */
  databaseUrl?: string;
  dataDir: string;
  /** Resolves once the API's producer connection to Redis is ready (false after 5 s). */
  redisReady(): Promise<boolean>;
  request(pathAndQuery: string, init?: RequestInit & { json?: unknown; auth?: string | false }): Promise<Response>;
  close(): Promise<void>;
}

export interface TestAppOptions {
  redisUrl?: string;
  bodyLimitBytes?: number;
  /** WEBHOOK_ALLOWED_HOSTS: empty refuses private addresses, as production does by default. */
  webhookAllowedHosts?: string[];
  eventsHeartbeatMs?: number;
  /** Bearer keys the app accepts (default: TEST_API_KEY only). */
  apiKeys?: string[];
  /** API_READ_KEYS: keys that may only read. */
  readOnlyApiKeys?: string[];
  jobResultTimeoutMs?: number;
  /** The read model's engine: SQLite (default) or a fresh PostgreSQL database dropped at close. */
  dialect?: DialectName;
  /** Share another app's Redis prefix (and its PostgreSQL database): a second API replica of the same service. */
  replicaOf?: TestApp;
  /** This replica's consumer name (API_REPLICA_ID). */
  replicaId?: string;
  /** STREAM_CLAIM_IDLE_MS. */
  claimIdleMs?: number;
  /** REDIS_COMMAND_TIMEOUT_MS (default: the config's). */
  redisCommandTimeoutMs?: number;
}

export async function createTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const data = tempDir("api");
  const redisUrl = options.redisUrl ?? testRedisUrl();
  if (options.replicaOf && !options.replicaOf.databaseUrl) {
    throw new Error("replicas share a PostgreSQL read model: create the first app with dialect postgres");
  }
  const prefix = options.replicaOf?.prefix ?? uniquePrefix("api");
  const database =
    options.replicaOf || options.dialect !== "postgres"
      ? { url: options.replicaOf?.databaseUrl, drop: async () => {} }
      : await createTestDatabase();
  const config = parseConfig({
    DATA_DIR: data.dir,
    DATABASE_URL: database.url,
    API_REPLICA_ID: options.replicaId ?? "replica-a",
    STREAM_CLAIM_IDLE_MS: String(options.claimIdleMs ?? 30_000),
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    BODY_LIMIT_BYTES: String(options.bodyLimitBytes ?? 1024 * 1024),
    JOB_RESULT_TIMEOUT_MS: String(options.jobResultTimeoutMs ?? 10_000),
    WEBHOOK_ALLOWED_HOSTS: (options.webhookAllowedHosts ?? []).join(","),
    WEBHOOK_SECRET_KEY: options.replicaOf?.secretKey.toString("base64") ?? randomBytes(32).toString("base64"),
    EVENTS_HEARTBEAT_MS: String(options.eventsHeartbeatMs ?? 15_000),
    REDIS_COMMAND_TIMEOUT_MS: options.redisCommandTimeoutMs?.toString(),
    API_READ_KEYS: options.readOnlyApiKeys?.join(","),
  });
  const live = !options.redisUrl;
  const runtime = await startApiRuntime(config, createLogger("api-test", "silent"), {
    apiKeys: options.apiKeys ?? [TEST_API_KEY],
    redisReadyWaitMs: live ? 5_000 : 0,
    projector: live,
    webhookPipeline: false,
    maintenance: false,
    schedules: false,
  });
  const { app, deps } = runtime;
  return {
    app,
    deps,
    db: deps.db,
    jobs: deps.jobs,
    projector: deps.projector,
    prefix,
    redisUrl,
    databaseUrl: database.url,
    dataDir: data.dir,
    webhookEndpoints: deps.webhookEndpoints,
    eventFeed: deps.eventFeed,
    secretKey: runtime.secretKey,
    redisReady: () => waitForRedisReady(deps.redis, 5_000),
    request(pathAndQuery, init = {}) {
      const headers = new Headers(init.headers);
      if (init.auth !== false) headers.set("authorization", `Bearer ${init.auth ?? TEST_API_KEY}`);
      let body = init.body;
      if (init.json !== undefined) {
        headers.set("content-type", "application/json");
        body = JSON.stringify(init.json);
      }
      return Promise.resolve(app.request(pathAndQuery, { ...init, headers, body }));
    },
    async close() {
      await runtime.stop();
      await database.drop();
      data.remove();
    },
  };
}

/** The official SDK, unchanged, talking to the in-process app. */
export function sdkClient(t: TestApp): Hypeman {
  return new Hypeman({
    apiKey: TEST_API_KEY,
    baseURL: "http://app.test",
    maxRetries: 0,
    fetch: (input, init) => Promise.resolve(t.app.request(input as string, init as RequestInit)),
  });
}
