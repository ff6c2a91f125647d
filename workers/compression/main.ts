// The compression worker: compresses snapshot memory payloads in the background, a bounded number at a time.
import { loadConfigOrExit } from "../../shared/config.ts";
import { resolveHostId } from "../../shared/host-id.ts";
import { queueName } from "../../shared/jobs/catalog.ts";
import { startJobWorker } from "../../shared/jobs/worker.ts";
import { createLogger } from "../../shared/logger.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import { onShutdownSignal } from "../../shared/shutdown.ts";
import { createCompressionHandlers } from "./handlers.ts";

const config = loadConfigOrExit();
const hostId = resolveHostId(config.HOST_ID, config.DATA_DIR);
const log = createLogger("compression-worker", config.LOG_LEVEL).child({ hostId });
if (!config.REDIS_URL) {
  log.fatal("REDIS_URL is not set: start the whole service with `npm start`, which runs a private Redis");
  process.exit(78);
}

const redis = connectRedis(config.REDIS_URL, "worker", config.REDIS_COMMAND_TIMEOUT_MS);
redis.on("error", (error) => log.warn({ err: error.message }, "redis connection error"));

const jobs = startJobWorker({
  queue: queueName("compression", hostId),
  prefix: config.REDIS_PREFIX,
  connection: redis,
  handlers: createCompressionHandlers({ dataDir: config.DATA_DIR }),
  concurrency: config.COMPRESSION_CONCURRENCY,
  log,
});
log.info({ concurrency: config.COMPRESSION_CONCURRENCY }, "compression worker started");

onShutdownSignal(log, config.SHUTDOWN_TIMEOUT_MS, stopProcess, config.SUPERVISOR_PID);

async function stopProcess(): Promise<void> {
  // In-flight compressions are aborted at the deadline; their jobs are retried by the next worker.
  await jobs.close(Math.max(1_000, config.SHUTDOWN_TIMEOUT_MS - 2_000));
  await closeRedis(redis);
}
