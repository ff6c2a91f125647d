// Everything the API process runs besides the HTTP server, wired from config: the read model, Redis, the
// projector, webhooks and the live event feed. api/main.ts and the in-process test app both build it here.
import type { Config } from "../shared/config.ts";
import { JobProducer } from "../shared/jobs/producer.ts";
import type { Logger } from "../shared/logger.ts";
import { objectStoreFor } from "../shared/object-store.ts";
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
import { startApiHeartbeat } from "./process-alive.ts";
import { requestBucketAnnouncement } from "./read-model/digests.ts";
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
  const db = await openReadModel(config, log);
  const { redis, jobs } = await connectProducer(config, redisUrl, options.redisReadyWaitMs, log);
  // While it beats, the Idempotency-Keys this process claims stay its own (api/process-alive.ts).
  const stopHeartbeat = startApiHeartbeat(redis, config.REDIS_PREFIX);
  const metrics = new ApiMetrics();
  const replica = { consumer: config.API_REPLICA_ID, claimIdleMs: config.STREAM_CLAIM_IDLE_MS };
  const { projector, projectorRedis } = startProjector(config, redisUrl, { db, redis, jobs, metrics, log }, options);

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
  const metricsReaders = options.projector ? startMetricsReaders(config, redisUrl, metrics, log) : undefined;
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
  const streamsAndRetention = options.maintenance ? startStreamsAndRetention(config, db, redis, log) : undefined;

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
    objects: objectStoreFor(config),
    idempotencyTtlMs: config.IDEMPOTENCY_KEY_TTL_MS,
    idempotencyDetachedWaitMs: config.IDEMPOTENCY_DETACHED_WAIT_MS,
  };
  const schedules = options.schedules ? startSchedules(config, redisUrl, deps, log) : undefined;
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
      // Each of these waits out a blocking read of up to a second: stopped together, not in a row.
      await Promise.all([
        streamsAndRetention?.stop(),
        webhooks?.stop(),
        redisRebuild.stop(),
        schedules?.stop(config.SHUTDOWN_TIMEOUT_MS / 2),
        projector.stop(),
        metricsReaders?.stop(),
      ]);
      await jobs.close();
      stopHeartbeat();
      await closeRedis(projectorRedis);
      await closeRedis(redis);
      await db.destroy();
      deps.objects?.close();
      eventLoop.stop();
    },
  };
}

/** The read model's database, migrated to the latest schema. */
async function openReadModel(config: Config, log: Logger) {
  const target = databaseTarget(config);
  const db = openDatabase(target);
  const applied = await migrateToLatest(db);
  log.info({ database: describeTarget(target), migrations: applied }, "database ready");
  return db;
}

/** The commands' Redis connection and the job producer on it; serves degraded if Redis is not up in time. */
async function connectProducer(config: Config, redisUrl: string, readyWaitMs: number, log: Logger) {
  const redis = connectRedis(redisUrl, "producer", config.REDIS_COMMAND_TIMEOUT_MS);
  redis.on("error", (error) => log.warn({ err: error.message }, "redis connection error"));
  if (!(await waitForRedisReady(redis, readyWaitMs))) {
    log.warn("redis is not reachable yet: serving degraded until it is");
  }
  const jobs = new JobProducer({
    redisUrl,
    prefix: config.REDIS_PREFIX,
    connection: redis,
    commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
  });
  return { redis, jobs };
}

/**
 * The projector, on a connection of its own (it blocks on the stream); when it runs, the hosts are asked to announce
 * once it is ready, so a fresh read model fills at once.
 */
function startProjector(
  config: Config,
  redisUrl: string,
  parts: { db: AppDeps["db"]; redis: AppDeps["redis"]; jobs: JobProducer; metrics: ApiMetrics; log: Logger },
  options: Pick<ApiRuntimeOptions, "projector">,
) {
  const { log } = parts;
  const projectorRedis = connectRedis(redisUrl, "worker", config.REDIS_COMMAND_TIMEOUT_MS);
  projectorRedis.on("error", (error) => log.warn({ err: error.message }, "projector redis connection error"));
  const projector = new Projector({
    db: parts.db,
    redis: projectorRedis,
    prefix: config.REDIS_PREFIX,
    log,
    consumer: config.API_REPLICA_ID,
    claimIdleMs: config.STREAM_CLAIM_IDLE_MS,
    maxApplyAttempts: config.PROJECTOR_MAX_ATTEMPTS,
    onDeadLetter: () => parts.metrics.readModelDeadLetters.inc(),
    onVanished: (host, keys) => {
      for (const kind of ["instance", "snapshot"] as const) {
        const count = keys.filter((key) => key.startsWith(`${kind}:`)).length;
        if (count > 0) parts.metrics.readModelVanished.inc({ kind, host }, count);
      }
    },
    resyncBuckets: (resync) =>
      requestBucketAnnouncement(
        {
          redis: parts.redis,
          prefix: config.REDIS_PREFIX,
          jobs: parts.jobs,
          cooldownMs: Math.floor(config.ANNOUNCE_INTERVAL_MS / 2),
          commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
        },
        resync,
      ),
  });
  if (options.projector) {
    projector.start();
    askHostsOnceReady({ redis: parts.redis, prefix: config.REDIS_PREFIX, jobs: parts.jobs, log }, projector.ready);
  }
  return { projector, projectorRedis };
}

/** The metrics observer's stream readers, each on a connection of its own (they block on their streams). */
function startMetricsReaders(config: Config, redisUrl: string, metrics: ApiMetrics, log: Logger) {
  const connections = [1, 2, 3].map(() => {
    const connection = connectRedis(redisUrl, "worker", config.REDIS_COMMAND_TIMEOUT_MS);
    connection.on("error", () => {}); // the observer retries; the projector already logs an unreachable Redis
    return connection;
  });
  const observer = startMetricsObserver({
    eventsRedis: connections[0]!,
    outcomesRedis: connections[1]!,
    figuresRedis: connections[2]!,
    prefix: config.REDIS_PREFIX,
    metrics,
    log,
  });
  return {
    async stop() {
      await observer.stop();
      for (const connection of connections) await closeRedis(connection);
    },
  };
}

/** Stream trimming and the retention of old rows (api/maintenance.ts). */
function startStreamsAndRetention(config: Config, db: AppDeps["db"], redis: AppDeps["redis"], log: Logger) {
  return startMaintenance({
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
  });
}

/** Snapshot-schedule runs from the `schedules` queue, on a connection of their own (they block on the queue). */
function startSchedules(config: Config, redisUrl: string, deps: AppDeps, log: Logger) {
  const connection = connectRedis(redisUrl, "worker", config.REDIS_COMMAND_TIMEOUT_MS);
  connection.on("error", (error) => log.warn({ err: error.message }, "schedules redis connection error"));
  const worker = startScheduleWorker(deps, connection);
  return {
    async stop(deadlineMs: number) {
      await worker.close(deadlineMs);
      await closeRedis(connection);
    },
  };
}
