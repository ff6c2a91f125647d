// The API process: validate config, migrate the read model, connect Redis, serve HTTP, stop cleanly.
import { serve } from "@hono/node-server";
import { loadConfigOrExit } from "../shared/config.ts";
import { JobProducer } from "../shared/jobs/producer.ts";
import { createLogger } from "../shared/logger.ts";
import { parseCompressionDefault } from "../shared/schemas/compression.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../shared/redis.ts";
import { onShutdownSignal } from "../shared/shutdown.ts";
import { loadSecretKey, SecretBox } from "../shared/webhooks/secrets.ts";
import { createUrlGuard } from "../shared/webhooks/url-guard.ts";
import { resolveApiKeys } from "./api-keys.ts";
import { createApp } from "./app.ts";
import { migrateToLatest, openDatabase } from "./db/database.ts";
import { Projector } from "./read-model/projector.ts";
import { EventFeed } from "./routes/events-feed.ts";
import { WebhookEndpoints } from "./webhooks/endpoints.ts";
import { startWebhookPipeline } from "./webhooks/pipeline.ts";

const config = loadConfigOrExit();
const log = createLogger("api", config.LOG_LEVEL);
if (!config.REDIS_URL) {
  log.fatal("REDIS_URL is not set: start the whole service with `npm start`, which runs a private Redis");
  process.exit(78);
}

const { keys, generatedFile } = resolveApiKeys(config.API_KEYS, config.DATA_DIR);
if (generatedFile)
  log.info({ file: generatedFile }, `no API_KEYS configured: using the generated key in ${generatedFile}`);

const db = openDatabase(config.DATABASE_PATH);
const applied = await migrateToLatest(db);
log.info({ database: config.DATABASE_PATH, migrations: applied }, "database ready");

const redis = connectRedis(config.REDIS_URL, "producer", config.REDIS_COMMAND_TIMEOUT_MS);
redis.on("error", (error) => log.warn({ err: error.message }, "redis connection error"));
if (!(await waitForRedisReady(redis, 5_000))) log.warn("redis is not reachable yet: serving degraded until it is");
const jobs = new JobProducer({
  redisUrl: config.REDIS_URL,
  prefix: config.REDIS_PREFIX,
  connection: redis,
  commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
});

// The projector blocks on the stream, so it reads over its own connection.
const projectorRedis = connectRedis(config.REDIS_URL, "worker", config.REDIS_COMMAND_TIMEOUT_MS);
projectorRedis.on("error", (error) => log.warn({ err: error.message }, "projector redis connection error"));
const projector = new Projector({ db, redis: projectorRedis, prefix: config.REDIS_PREFIX, log });
await projector.start();

const webhookEndpoints = new WebhookEndpoints({
  db,
  redis,
  prefix: config.REDIS_PREFIX,
  secretBox: new SecretBox(loadSecretKey(config.WEBHOOK_SECRET_KEY, config.DATA_DIR)),
  urlGuard: createUrlGuard(config.WEBHOOK_ALLOWED_HOSTS),
  redisCommandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
});
const eventFeed = new EventFeed({
  redisUrl: config.REDIS_URL,
  prefix: config.REDIS_PREFIX,
  commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
  heartbeatMs: config.EVENTS_HEARTBEAT_MS,
  log,
});
const webhooks = startWebhookPipeline({
  redisUrl: config.REDIS_URL,
  prefix: config.REDIS_PREFIX,
  db,
  endpoints: webhookEndpoints,
  jobs,
  disableAfterMs: config.WEBHOOK_DISABLE_AFTER_MS,
  commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
  log,
});

const app = createApp({
  db,
  redis,
  jobs,
  projector,
  log,
  apiKeys: keys,
  defaultCompression: parseCompressionDefault(config.SNAPSHOT_COMPRESSION_DEFAULT),
  redisPrefix: config.REDIS_PREFIX,
  bodyLimitBytes: config.BODY_LIMIT_BYTES,
  jobResultTimeoutMs: config.JOB_RESULT_TIMEOUT_MS,
  redisCommandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
  webhookEndpoints,
  eventFeed,
});

const server = serve({ fetch: app.fetch, port: config.PORT, hostname: config.HOST }, (info) =>
  log.info({ port: info.port, host: config.HOST }, "listening"),
);

onShutdownSignal(log, config.SHUTDOWN_TIMEOUT_MS, stopProcess, config.SUPERVISOR_PID);

async function stopProcess(): Promise<void> {
  await eventFeed.close(); // ends live event streams, which would otherwise hold the server open
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    // Keep-alive sockets would hold close() open until they idle out.
    (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
  });
  await webhooks.stop();
  await jobs.close();
  await projector.stop();
  await closeRedis(projectorRedis);
  await closeRedis(redis);
  await db.destroy();
}
