// The webhook worker: delivers events to subscribers from the `webhooks` queue. It never reads SQLite:
// endpoints come from the API's Redis mirror, outcomes go back over a Redis stream.
import { bootProcess } from "../../shared/process-boot.ts";
import { closeRedis } from "../../shared/redis.ts";
import { onShutdownSignal } from "../../shared/shutdown.ts";
import { loadSecretKey, SecretBox } from "../../shared/webhooks/secrets.ts";
import { createUrlGuard } from "../../shared/webhooks/url-guard.ts";
import { startWebhookWorker } from "./worker.ts";

const boot = bootProcess("webhooks-worker");
const { config, log } = boot;
const queueConnection = boot.connectRedis();
const redis = boot.connectRedis();

const jobs = startWebhookWorker({
  queueConnection,
  redis,
  prefix: config.REDIS_PREFIX,
  secretBox: new SecretBox(loadSecretKey(config.WEBHOOK_SECRET_KEY, config.DATA_DIR)),
  guard: createUrlGuard(config.WEBHOOK_ALLOWED_HOSTS),
  retrySchedule: config.WEBHOOK_RETRY_SCHEDULE,
  timeoutMs: config.WEBHOOK_TIMEOUT_MS,
  concurrency: config.WEBHOOK_CONCURRENCY,
  log,
});
log.info(
  { concurrency: config.WEBHOOK_CONCURRENCY, retrySchedule: config.WEBHOOK_RETRY_SCHEDULE },
  "webhook worker started",
);

onShutdownSignal(log, config.SHUTDOWN_TIMEOUT_MS, stopProcess, config.SUPERVISOR_PID);

async function stopProcess(): Promise<void> {
  // An attempt cut off at the deadline is retried (same webhook-id) by the next worker.
  await jobs.close(Math.max(1_000, config.SHUTDOWN_TIMEOUT_MS - 2_000));
  await Promise.all([closeRedis(queueConnection), closeRedis(redis)]);
}
