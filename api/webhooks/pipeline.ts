// The API process's half of webhooks: sync the Redis mirror, then run the dispatcher and the outcome recorder.
// Start-up retries until Redis answers, so the API serves (degraded) meanwhile.
import type { JobProducer } from "../../shared/jobs/producer.ts";
import type { Logger } from "../../shared/logger.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import type { Db } from "../db/database.ts";
import type { StreamConsumer } from "../stream-consumer.ts";
import { startWebhookDispatcher } from "./dispatcher.ts";
import type { WebhookEndpoints } from "./endpoints.ts";
import { startOutcomeRecorder } from "./outcomes.ts";

export interface WebhookPipelineOptions {
  redisUrl: string;
  prefix: string;
  db: Db;
  endpoints: WebhookEndpoints;
  jobs: JobProducer;
  disableAfterMs: number;
  commandTimeoutMs: number;
  log: Logger;
  /** How long a blocking read waits: also the most a stop waits for it. */
  blockMs?: number;
  /** This replica's consumer name in both groups (API_REPLICA_ID). */
  consumer: string;
  claimIdleMs: number;
}

export interface WebhookPipeline {
  /** Resolves once the mirror is synced and both consumers run. */
  ready: Promise<void>;
  stop(): Promise<void>;
}

const START_RETRY_MS = 1_000;

export function startWebhookPipeline(options: WebhookPipelineOptions): WebhookPipeline {
  const log = options.log.child({ component: "webhooks" });
  // Each consumer blocks on its own stream, so each gets its own connection.
  const dispatcherRedis = connectRedis(options.redisUrl, "worker", options.commandTimeoutMs);
  const recorderRedis = connectRedis(options.redisUrl, "worker", options.commandTimeoutMs);
  for (const connection of [dispatcherRedis, recorderRedis]) {
    connection.on("error", (error) => log.warn({ err: error.message }, "webhooks redis connection error"));
  }
  const consumers: StreamConsumer[] = [];
  let stopping = false;

  const ready = (async () => {
    for (;;) {
      try {
        const mirrored = await options.endpoints.syncMirror();
        consumers.push(await startWebhookDispatcher({ ...options, redis: dispatcherRedis, log }));
        consumers.push(await startOutcomeRecorder({ ...options, redis: recorderRedis, log }));
        log.info({ endpoints: mirrored }, "webhook dispatcher started");
        return;
      } catch (error) {
        if (stopping) return;
        log.warn({ err: (error as Error).message }, "webhook dispatcher cannot start yet; retrying");
        await Promise.all(consumers.splice(0).map((consumer) => consumer.stop()));
        await new Promise((resolve) => setTimeout(resolve, START_RETRY_MS));
      }
    }
  })();

  return {
    ready,
    async stop() {
      stopping = true;
      await ready;
      await Promise.all(consumers.map((consumer) => consumer.stop()));
      await Promise.all([closeRedis(dispatcherRedis), closeRedis(recorderRedis)]);
    },
  };
}
