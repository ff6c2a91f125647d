// Starts the delivery worker on the shared `webhooks` queue: what main.ts runs, and what tests and the benchmark start.
import type { Redis } from "ioredis";
import { queueName } from "../../shared/jobs/catalog.ts";
import { type JobWorker, startJobWorker } from "../../shared/jobs/worker.ts";
import type { Logger } from "../../shared/logger.ts";
import { createWebhookHandlers, type WebhookHandlerDeps, webhookBackoff } from "./handlers.ts";

export interface WebhookWorkerOptions extends WebhookHandlerDeps {
  /** A worker-role connection for BullMQ; `redis` (mirror reads, reports) may be another. */
  queueConnection: Redis;
  concurrency: number;
  log: Logger;
}

export function startWebhookWorker(options: WebhookWorkerOptions): JobWorker {
  return startJobWorker({
    queue: queueName("webhooks"),
    prefix: options.prefix,
    connection: options.queueConnection,
    handlers: createWebhookHandlers(options),
    concurrency: options.concurrency,
    backoffStrategy: webhookBackoff(options.retrySchedule),
    log: options.log,
  });
}
