// Pending webhook deliveries live in the database; their jobs only in Redis. A pending delivery whose job is gone
// (Redis lost its data) is enqueued again, at its next attempt time, so it goes out instead of staying pending.
import type { Logger } from "../../shared/logger.ts";
import { redisCall } from "../../shared/redis.ts";
import type { AppDeps } from "../deps.ts";

/** A delivery touched this recently may have its outcome on the way (outcome stream not yet applied): left alone. */
const SETTLE_MS = 60_000;
const PAGE = 500;

/** Re-enqueues pending deliveries that have no job; returns how many. */
export async function requeuePendingDeliveries(deps: AppDeps, log: Logger, now = Date.now()): Promise<number> {
  const queue = deps.jobs.queue("webhooks");
  const settledBefore = new Date(now - SETTLE_MS).toISOString();
  let requeued = 0;
  let after = "";
  for (;;) {
    const rows = await deps.db
      .selectFrom("webhook_deliveries")
      .select(["id", "endpoint_id", "event_id", "body", "next_attempt_at"])
      .where("status", "=", "pending")
      .where("updated_at", "<", settledBefore)
      .where("id", ">", after)
      .orderBy("id")
      .limit(PAGE)
      .execute();
    for (const row of rows) {
      const job = await redisCall(queue.getJob(row.id), deps.redisCommandTimeoutMs, "webhooks: find delivery job");
      if (job) continue;
      const dueIn = row.next_attempt_at ? Date.parse(row.next_attempt_at) - now : 0;
      await deps.jobs.enqueue(
        "webhook.deliver",
        { delivery_id: row.id, endpoint_id: row.endpoint_id, event_id: row.event_id, body: row.body },
        { jobId: row.id, delayMs: Math.max(0, dueIn) },
      );
      requeued++;
    }
    if (rows.length < PAGE) break;
    after = rows.at(-1)!.id;
  }
  if (requeued > 0) log.warn({ requeued }, "pending webhook deliveries enqueued again (their jobs were gone)");
  return requeued;
}
