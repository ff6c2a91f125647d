// Applies the worker's attempt outcomes (a Redis stream) to the delivery log, and disables endpoints
// that answered 410 Gone or have failed without a success for WEBHOOK_DISABLE_AFTER_MS.
import type { Redis } from "ioredis";
import { ApiError } from "../../shared/errors.ts";
import type { Logger } from "../../shared/logger.ts";
import { type DeliveryOutcome, decodeOutcome, outcomeStreamKey } from "../../shared/webhooks/mirror.ts";
import type { Db } from "../db/database.ts";
import { type StreamConsumer, type StreamEntries, startStreamConsumer } from "../stream-consumer.ts";
import { applyOutcome } from "./deliveries.ts";
import type { WebhookEndpoints } from "./endpoints.ts";

export const OUTCOME_GROUP = "api";

export interface OutcomeRecorderOptions {
  /** A worker-role connection the recorder owns for its blocking reads. */
  redis: Redis;
  prefix: string;
  db: Db;
  endpoints: WebhookEndpoints;
  disableAfterMs: number;
  log: Logger;
  blockMs?: number;
  /** This replica's consumer name (API_REPLICA_ID). */
  consumer: string;
  /** Outcomes a dead replica left unacknowledged this long are recorded here (STREAM_CLAIM_IDLE_MS). */
  claimIdleMs: number;
}

export function startOutcomeRecorder(options: OutcomeRecorderOptions): Promise<StreamConsumer> {
  // Endpoints to disable, kept until Redis takes the change: a replayed batch finds its outcomes applied already.
  // A crash loses none for long: the next failure of that endpoint gives the same reason again.
  const toDisable = new Map<string, string>();
  // One transaction per batch: the log keeps up with the worker, and a crash replays the batch (idempotent).
  // Disabling writes the Redis mirror, so it runs after the commit: no transaction waits on Redis.
  const record = async (entries: StreamEntries) => {
    await options.db.transaction().execute(async (trx) => {
      for (const [outcomeId, fields] of entries) {
        const outcome = decodeOrSkip(outcomeId, fields, options.log);
        if (!outcome) continue;
        const reason = await applyOutcome(trx, outcomeId, outcome, options.disableAfterMs);
        if (reason) toDisable.set(outcome.endpoint_id, reason);
      }
    });
    for (const [endpointId, reason] of [...toDisable]) {
      try {
        await options.endpoints.disable(endpointId, reason);
        toDisable.delete(endpointId);
        options.log.warn({ endpointId, reason }, "webhook endpoint disabled");
      } catch (error) {
        if (error instanceof ApiError && error.code === "not_found") toDisable.delete(endpointId);
        else options.log.warn({ endpointId, err: (error as Error).message }, "webhook endpoint not disabled yet");
      }
    }
  };

  return startStreamConsumer({
    redis: options.redis,
    key: outcomeStreamKey(options.prefix),
    group: OUTCOME_GROUP,
    consumer: options.consumer,
    claimIdleMs: options.claimIdleMs,
    startAt: "0",
    handle: record,
    log: options.log,
    blockMs: options.blockMs,
  });
}

function decodeOrSkip(outcomeId: string, fields: string[], log: Logger): DeliveryOutcome | undefined {
  try {
    return decodeOutcome(fields);
  } catch (error) {
    log.error({ outcomeId, err: (error as Error).message }, "unreadable delivery outcome skipped");
    return undefined;
  }
}
