// Applies the worker's attempt outcomes (a Redis stream) to the delivery log, and disables endpoints
// that answered 410 Gone or have failed without a success for WEBHOOK_DISABLE_AFTER_MS.
import type { Redis } from "ioredis";
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
  // One transaction per batch: the log keeps up with the worker, and a crash replays the batch (idempotent).
  const record = async (entries: StreamEntries) => {
    const disabled = await options.db.transaction().execute(async (trx) => {
      const disabledNow: Array<{ endpointId: string; reason: string }> = [];
      for (const [outcomeId, fields] of entries) {
        const outcome = decodeOrSkip(outcomeId, fields, options.log);
        if (!outcome) continue;
        const reason = await applyOutcome(trx, outcomeId, outcome, options.disableAfterMs);
        if (reason) {
          await options.endpoints.disable(outcome.endpoint_id, reason, trx);
          disabledNow.push({ endpointId: outcome.endpoint_id, reason });
        }
      }
      return disabledNow;
    });
    for (const { endpointId, reason } of disabled)
      options.log.warn({ endpointId, reason }, "webhook endpoint disabled");
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
