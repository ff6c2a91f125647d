// An in-process API app on real parts: a SQLite file in a temp dir and the test Redis (or a dead one).
import { randomBytes } from "node:crypto";
import type { App } from "../../api/app.ts";
import type { Db } from "../../api/db/database.ts";
import type { Projector } from "../../api/read-model/projector.ts";
import type { EventFeed } from "../../api/routes/events-feed.ts";
import { startApiRuntime } from "../../api/runtime.ts";
import type { WebhookEndpoints } from "../../api/webhooks/endpoints.ts";
import { parseConfig } from "../../shared/config.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import { createLogger } from "../../shared/logger.ts";
import { waitForRedisReady } from "../../shared/redis.ts";
import { tempDir, testRedisUrl, uniquePrefix } from "./fixtures.ts";

export const TEST_API_KEY = "test-key-0123456789abcdef";

export interface TestApp {
  app: App;
  db: Db;
  jobs: JobProducer;
  webhookEndpoints: WebhookEndpoints;
  eventFeed: EventFeed;
  /** The key sealing webhook secrets: a webhook worker under test needs the same. */
  secretKey: Buffer;
  projector: Projector;
  prefix: string;
  redisUrl: string;
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
  jobResultTimeoutMs?: number;
}

export async function createTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const data = tempDir("api");
  const redisUrl = options.redisUrl ?? testRedisUrl();
  const prefix = uniquePrefix("api");
  const config = parseConfig({
    DATA_DIR: data.dir,
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    BODY_LIMIT_BYTES: String(options.bodyLimitBytes ?? 1024 * 1024),
    JOB_RESULT_TIMEOUT_MS: String(options.jobResultTimeoutMs ?? 10_000),
    WEBHOOK_ALLOWED_HOSTS: (options.webhookAllowedHosts ?? []).join(","),
    WEBHOOK_SECRET_KEY: randomBytes(32).toString("base64"),
    EVENTS_HEARTBEAT_MS: String(options.eventsHeartbeatMs ?? 15_000),
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
    db: deps.db,
    jobs: deps.jobs,
    projector: deps.projector,
    prefix,
    redisUrl,
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
      data.remove();
    },
  };
}
