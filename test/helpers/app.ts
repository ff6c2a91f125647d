// An in-process API app on real parts: a SQLite file in a temp dir and the test Redis (or a dead one).
import { randomBytes } from "node:crypto";
import path from "node:path";
import { type App, createApp } from "../../api/app.ts";
import { type Db, migrateToLatest, openDatabase } from "../../api/db/database.ts";
import { Projector } from "../../api/read-model/projector.ts";
import { EventFeed } from "../../api/routes/events-feed.ts";
import { WebhookEndpoints } from "../../api/webhooks/endpoints.ts";
import { JobProducer } from "../../shared/jobs/producer.ts";
import { createLogger } from "../../shared/logger.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../../shared/redis.ts";
import { SecretBox } from "../../shared/webhooks/secrets.ts";
import { createUrlGuard } from "../../shared/webhooks/url-guard.ts";
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
  request(pathAndQuery: string, init?: RequestInit & { json?: unknown; auth?: string | false }): Promise<Response>;
  close(): Promise<void>;
}

export interface TestAppOptions {
  redisUrl?: string;
  bodyLimitBytes?: number;
  /** WEBHOOK_ALLOWED_HOSTS: empty refuses private addresses, as production does by default. */
  webhookAllowedHosts?: string[];
  eventsHeartbeatMs?: number;
}

export async function createTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const data = tempDir("api");
  const redisUrl = options.redisUrl ?? testRedisUrl();
  const prefix = uniquePrefix("api");
  const db = openDatabase(path.join(data.dir, "snapfleet.db"));
  await migrateToLatest(db);
  const redis = connectRedis(redisUrl, "producer", 1_000);
  redis.on("error", () => {});
  if (!options.redisUrl) await waitForRedisReady(redis, 5_000);
  const jobs = new JobProducer({ redisUrl, prefix, connection: redis, commandTimeoutMs: 1_000 });
  const projectorRedis = connectRedis(redisUrl, "worker", 1_000);
  projectorRedis.on("error", () => {});
  const log = createLogger("api-test", "silent");
  const projector = new Projector({ db, redis: projectorRedis, prefix, log });
  if (!options.redisUrl) await projector.start();
  const secretKey = randomBytes(32);
  const webhookEndpoints = new WebhookEndpoints({
    db,
    redis,
    prefix,
    secretBox: new SecretBox(secretKey),
    urlGuard: createUrlGuard(options.webhookAllowedHosts ?? []),
    redisCommandTimeoutMs: 1_000,
  });
  const eventFeed = new EventFeed({
    redisUrl,
    prefix,
    commandTimeoutMs: 1_000,
    heartbeatMs: options.eventsHeartbeatMs ?? 15_000,
    log: createLogger("api-test", "silent"),
  });
  const app = createApp({
    db,
    redis,
    jobs,
    projector,
    log,
    apiKeys: [TEST_API_KEY],
    defaultCompression: { enabled: false },
    redisPrefix: prefix,
    bodyLimitBytes: options.bodyLimitBytes ?? 1024 * 1024,
    jobResultTimeoutMs: 10_000,
    redisCommandTimeoutMs: 1_000,
    webhookEndpoints,
    eventFeed,
  });
  return {
    app,
    db,
    jobs,
    projector,
    prefix,
    redisUrl,
    dataDir: data.dir,
    webhookEndpoints,
    eventFeed,
    secretKey,
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
      await eventFeed.close();
      await jobs.close();
      await projector.stop();
      await closeRedis(projectorRedis);
      await closeRedis(redis);
      await db.destroy();
      data.remove();
    },
  };
}
