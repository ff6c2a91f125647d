// Everything the API process runs besides the HTTP server, wired from config: the read model, Redis, the
// projector, webhooks and the live event feed. api/main.ts and the in-process test app both build it here.
import type { Config } from "../shared/config.ts";
import { JobProducer } from "../shared/jobs/producer.ts";
import type { Logger } from "../shared/logger.ts";
import { payloadClientFor } from "../shared/payload-client.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../shared/redis.ts";
import { parseCompressionDefault } from "../shared/schemas/compression.ts";
import { loadSecretKey, SecretBox } from "../shared/webhooks/secrets.ts";
import { createUrlGuard } from "../shared/webhooks/url-guard.ts";
import { createApp } from "./app.ts";
import { databaseTarget, describeTarget, migrateToLatest, openDatabase } from "./db/database.ts";
import type { App, AppDeps } from "./deps.ts";
import { startEventLoopMonitor } from "./event-loop.ts";
import { HostDirectoryView } from "./host-directory.ts";
import { startMaintenance } from "./maintenance.ts";
import { ApiMetrics } from "./metrics/metrics.ts";
import { startMetricsObserver } from "./metrics/observe.ts";
import { askHostsOnceReady } from "./read-model/maintenance.ts";
import { Projector } from "./read-model/projector.ts";
import { startRedisRebuild } from "./redis-rebuild.ts";
import { EventFeed } from "./routes/events-feed.ts";
import { startScheduleWorker } from "./schedules/worker.ts";
import { WebhookEndpoints } from "./webhooks/endpoints.ts";
import { startWebhookPipeline, type WebhookPipeline } from "./webhooks/pipeline.ts";

export interface ApiRuntimeOptions {
  apiKeys: string[];
  /** How long start-up waits for Redis before serving degraded. */
  redisReadyWaitMs: number;
  /** Run the projector (the read model follows the event stream). */
  projector: boolean;
  /** Run the webhook dispatcher and outcome recorder. */
  webhookPipeline: boolean;
  /** Trim streams and prune old rows on an interval (api/maintenance.ts). */
  maintenance: boolean;
  /** Take snapshot-schedule runs from the `schedules` queue. */
  schedules: boolean;
}

export interface ApiRuntime {
  app: App;
  deps: AppDeps;
  secretKey: Buffer;
  webhooks?: WebhookPipeline;
  /** Ends live event streams first (they would hold the HTTP server open), then the rest. */
  closeEventStreams(): Promise<void>;
  stop(): Promise<void>;
}

export async function startApiRuntime(config: Config, log: Logger, options: ApiRuntimeOptions): Promise<ApiRuntime> {
  const redisUrl = config.REDIS_URL;
  if (!redisUrl) throw new Error("REDIS_URL is required by the API");
  const eventLoop = startEventLoopMonitor(log);
  const target = databaseTarget(config);
  const db = openDatabase(target);
  const applied = await migrateToLatest(db);
  log.info({ database: describeTarget(target), migrations: applied }, "database ready");

  const redis = connectRedis(redisUrl, "producer", config.REDIS_COMMAND_TIMEOUT_MS);
  redis.on("error", (error) => log.warn({ err: error.message }, "redis connection error"));
  if (!(await waitForRedisReady(redis, options.redisReadyWaitMs))) {
    log.warn("redis is not reachable yet: serving degraded until it is");
  }
  const jobs = new JobProducer({
    redisUrl,
    prefix: config.REDIS_PREFIX,
    connection: redis,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
  });

  // The projector blocks on the stream, so it reads over its own connection.
  const projectorRedis = connectRedis(redisUrl, "worker", config.REDIS_COMMAND_TIMEOUT_MS);
  projectorRedis.on("error", (error) => log.warn({ err: error.message }, "projector redis connection error"));
  const replica = { consumer: config.API_REPLICA_ID, claimIdleMs: config.STREAM_CLAIM_IDLE_MS };
  const metrics = new ApiMetrics();
  const projector = new Projector({
    db,
    redis: projectorRedis,
    prefix: config.REDIS_PREFIX,
    log,
    ...replica,
    maxApplyAttempts: config.PROJECTOR_MAX_ATTEMPTS,
    onDeadLetter: () => metrics.readModelDeadLetters.inc(),
  });
  if (options.projector) projector.start();
  if (options.projector) askHostsOnceReady({ redis, prefix: config.REDIS_PREFIX, jobs, log }, projector.ready);

  const secretKey = loadSecretKey(config.WEBHOOK_SECRET_KEY, config.DATA_DIR);
  const webhookEndpoints = new WebhookEndpoints({
    db,
    redis,
    prefix: config.REDIS_PREFIX,
    secretBox: new SecretBox(secretKey),
    urlGuard: createUrlGuard(config.WEBHOOK_ALLOWED_HOSTS),
    redisCommandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
  });
  const eventFeed = new EventFeed({
    redisUrl,
    prefix: config.REDIS_PREFIX,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    heartbeatMs: config.EVENTS_HEARTBEAT_MS,
    log,
  });
  const hostDirectory = new HostDirectoryView({
    redis,
    prefix: config.REDIS_PREFIX,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
  });
  hostDirectory.start();
  // The metrics readers block on their streams, so each has its own connection (none when they do not run).
  const metricsRedis = (options.projector ? [1, 2, 3] : []).map(() => {
    const connection = connectRedis(redisUrl, "worker", config.REDIS_COMMAND_TIMEOUT_MS);
    connection.on("error", () => {}); // the observer retries; the projector already logs an unreachable Redis
    return connection;
  });
  const metricsObserver = options.projector
    ? startMetricsObserver({
        eventsRedis: metricsRedis[0]!,
        outcomesRedis: metricsRedis[1]!,
        figuresRedis: metricsRedis[2]!,
        prefix: config.REDIS_PREFIX,
        metrics,
        log,
      })
    : undefined;
  const webhooks = options.webhookPipeline
    ? startWebhookPipeline({
        redisUrl,
        prefix: config.REDIS_PREFIX,
        db,
        endpoints: webhookEndpoints,
        jobs,
        disableAfterMs: config.WEBHOOK_DISABLE_AFTER_MS,
        commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
        log,
        ...replica,
      })
    : undefined;

  const streamsAndRetention = options.maintenance
    ? startMaintenance({
        db,
        retention: {
          processedEventsMs: config.PROCESSED_EVENTS_RETENTION,
          deletedResourcesMs: config.DELETED_RESOURCES_RETENTION,
          webhookDeliveriesMs: config.WEBHOOK_DELIVERIES_RETENTION,
        },
        redis,
        prefix: config.REDIS_PREFIX,
        streamMaxLength: config.EVENT_STREAM_MAX_LENGTH,
        log,
      })
    : undefined;

  const deps: AppDeps = {
    db,
    redis,
    jobs,
    projector,
    log,
    apiKeys: options.apiKeys,
    readOnlyApiKeys: config.API_READ_KEYS,
    defaultCompression: parseCompressionDefault(config.SNAPSHOT_COMPRESSION_DEFAULT),
    redisPrefix: config.REDIS_PREFIX,
    bodyLimitBytes: config.BODY_LIMIT_BYTES,
    jobResultTimeoutMs: config.JOB_RESULT_TIMEOUT_MS,
    redisCommandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
    webhookEndpoints,
    eventFeed,
    metrics,
    hostDirectory,
    payloads: payloadClientFor(config),
    idempotencyTtlMs: config.IDEMPOTENCY_KEY_TTL_MS,
    idempotencyDetachedWaitMs: config.IDEMPOTENCY_DETACHED_WAIT_MS,
  };
  // Schedule runs block on their queue, so they read over a connection of their own.
  const scheduleRedis = options.schedules
    ? connectRedis(redisUrl, "worker", config.REDIS_COMMAND_TIMEOUT_MS)
    : undefined;
  scheduleRedis?.on("error", (error) => log.warn({ err: error.message }, "schedules redis connection error"));
  const schedules = scheduleRedis ? startScheduleWorker(deps, scheduleRedis) : undefined;
  const redisRebuild = startRedisRebuild(deps, {
    intervalMs: config.RECONCILE_INTERVAL_MS,
    schedules: options.schedules,
    webhookDeliveries: options.webhookPipeline,
  });
  return {
    app: createApp(deps),
    deps,
    secretKey,
    webhooks,
    closeEventStreams: () => eventFeed.close(),
    async stop() {
      await eventFeed.close();
      hostDirectory.stop();
      await Promise.all([
        streamsAndRetention?.stop(),
        webhooks?.stop(),
        redisRebuild.stop(),
        schedules?.close(config.SHUTDOWN_TIMEOUT_MS / 2),
        projector.stop(),
        metricsObserver?.stop(),
      ]);
      if (scheduleRedis) await closeRedis(scheduleRedis);
      await jobs.close();
      await closeRedis(projectorRedis);
      for (const connection of metricsRedis) await closeRedis(connection);
      await closeRedis(redis);
      await db.destroy();
      eventLoop.stop();
    },
  };
}
