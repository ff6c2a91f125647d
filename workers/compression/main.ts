// The compression worker: compresses this host's snapshot memory payloads in the background, a bounded number
// at a time, and makes sure no snapshot waits forever for a job that vanished.
import { EventStream } from "../../shared/events/stream.ts";
import { isRetiredHost } from "../../shared/hosts.ts";
import { StandbyMemory } from "../../shared/instances/standby-memory.ts";
import { queueName } from "../../shared/jobs/catalog.ts";
import { JobProducer } from "../../shared/jobs/producer.ts";
import { startJobWorker } from "../../shared/jobs/worker.ts";
import { selectWorkerCodec, workerFigureReporter } from "../../shared/metrics/worker-figures.ts";
import { objectStoreFor } from "../../shared/object-store.ts";
import { removeHostLeftovers } from "../../shared/orphans.ts";
import { bootProcess, exitIfRetired } from "../../shared/process-boot.ts";
import { closeRedis } from "../../shared/redis.ts";
import { onShutdownSignal } from "../../shared/shutdown.ts";
import { SnapshotStore } from "../../shared/snapshots/store.ts";
import { createCompressionHandlers } from "./handlers.ts";
import { requeueStandbyCompressions, requeueUnfinishedCompressions, requeueUploads } from "./reconcile.ts";

const RECONCILE_INTERVAL_MS = 30_000;

const boot = bootProcess("compression-worker", { perHost: true });
const { config, log } = boot;
const hostId = boot.hostId!;
const redis = boot.connectRedis();
await exitIfRetired(redis, config.REDIS_PREFIX, hostId, log);
const reportFigure = workerFigureReporter(redis, config.REDIS_PREFIX, log);
await selectWorkerCodec(config.CODEC_BACKEND, log, "compression-worker", reportFigure);
const store = new SnapshotStore(config.DATA_DIR, redis, config.REDIS_PREFIX);
const queue = queueName("compression", hostId);
const jobs = new JobProducer({
  redisUrl: config.REDIS_URL,
  prefix: config.REDIS_PREFIX,
  connection: redis,
  commandTimeoutMs: config.REDIS_COMMAND_TIMEOUT_MS,
});

// With an object store this worker also uploads the host's snapshots to it (upload-snapshot.ts).
const objects = objectStoreFor(config);
const standbyMemory = new StandbyMemory({ dataDir: config.DATA_DIR, redis, prefix: config.REDIS_PREFIX, log });

await removeHostLeftovers(config.DATA_DIR, log);
const worker = startJobWorker({
  queue,
  prefix: config.REDIS_PREFIX,
  connection: redis,
  handlers: createCompressionHandlers({
    store,
    events: new EventStream(redis, config.REDIS_PREFIX),
    log,
    standbyMemory,
    jobs,
    hostId,
    objects,
    redis,
    prefix: config.REDIS_PREFIX,
  }),
  concurrency: config.COMPRESSION_CONCURRENCY,
  lockDurationMs: config.COMPRESSION_JOB_LOCK_MS,
  log,
});
log.info(
  { queue, concurrency: config.COMPRESSION_CONCURRENCY, objectStore: objects?.bucket ?? null },
  "compression worker started",
);

const reconcile = async () => {
  // Retired while it ran (it was thought dead): its uploads would write over what the adopters own.
  if (await isRetiredHost(redis, config.REDIS_PREFIX, hostId).catch(() => false)) {
    log.error({ hostId }, "this host was retired (DELETE /hosts/{id}): the compression worker stops");
    process.kill(process.pid, "SIGTERM");
    return;
  }
  await Promise.all([
    requeueUnfinishedCompressions(store, jobs, queue, hostId, log),
    requeueStandbyCompressions(standbyMemory, jobs, queue, hostId, log),
    objects ? requeueUploads(store, jobs, hostId, log) : [],
  ]).catch((error: Error) => log.warn({ err: error.message }, "compression reconcile failed"));
};
await reconcile();
// A reconnect may be to a Redis that lost its queues: requeue at once rather than at the next interval.
redis.on("ready", () => void reconcile());
const reconcileTimer = setInterval(reconcile, RECONCILE_INTERVAL_MS);

onShutdownSignal(log, config.SHUTDOWN_TIMEOUT_MS, stopProcess, config.SUPERVISOR_PID);

async function stopProcess(): Promise<void> {
  clearInterval(reconcileTimer);
  // In-flight compressions are aborted at the deadline; their jobs are retried by the next worker.
  await worker.close(Math.max(1_000, config.SHUTDOWN_TIMEOUT_MS - 2_000));
  await jobs.close();
  objects?.close();
  await closeRedis(redis);
}
