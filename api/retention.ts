// Prunes the read model by age: applied event ids, tombstones of deleted instances and snapshots, finished webhook
// deliveries (their attempts go with them); and what expires by its own deadline: replayable Idempotency-Key answers
// and names held for outcomes that never came. Small batches, each its own statement, so no long write blocks the API.
import type { Db } from "./db/database.ts";
import { pruneExpiredKeys } from "./middleware/idempotency/store.ts";
import { releaseExpiredReservations } from "./read-model/names.ts";

export const PRUNE_BATCH = 500;

export interface RetentionPolicy {
  /** Milliseconds to keep each kind of row once it is final. */
  processedEventsMs: number;
  deletedResourcesMs: number;
  webhookDeliveriesMs: number;
}

export interface PruneReport {
  processed_events: number;
  instances: number;
  snapshots: number;
  webhook_deliveries: number;
  idempotency_keys: number;
  name_reservations: number;
}

const cutoff = (now: number, ms: number) => new Date(now - ms).toISOString();

/** Deletes, a batch at a time, the rows `deleteBatch` removes, until a batch comes back short. */
async function inBatches(deleteBatch: () => Promise<number>): Promise<number> {
  let total = 0;
  for (;;) {
    const deleted = await deleteBatch();
    total += deleted;
    if (deleted < PRUNE_BATCH) return total;
    await new Promise((resolve) => setImmediate(resolve)); // let requests in between batches
  }
}

const count = (result: Array<{ numDeletedRows: bigint }>) => Number(result[0]?.numDeletedRows ?? 0n);

/** Tombstones of deleted resources older than `deletedBefore`. */
const pruneTombstones = (db: Db, table: "instances" | "snapshots", deletedBefore: string) =>
  inBatches(async () =>
    count(
      await db
        .deleteFrom(table)
        .where("id", "in", (eb) =>
          eb.selectFrom(table).select("id").where("deleted_at", "<", deletedBefore).limit(PRUNE_BATCH),
        )
        .execute(),
    ),
  );

export async function pruneByAge(db: Db, policy: RetentionPolicy, now = Date.now()): Promise<PruneReport> {
  const appliedBefore = cutoff(now, policy.processedEventsMs);
  const deletedBefore = cutoff(now, policy.deletedResourcesMs);
  const finishedBefore = cutoff(now, policy.webhookDeliveriesMs);
  return {
    processed_events: await inBatches(async () =>
      count(
        await db
          .deleteFrom("processed_events")
          .where("event_id", "in", (eb) =>
            eb
              .selectFrom("processed_events")
              .select("event_id")
              .where("applied_at", "<", appliedBefore)
              .limit(PRUNE_BATCH),
          )
          .execute(),
      ),
    ),
    instances: await pruneTombstones(db, "instances", deletedBefore),
    // Their tags go with them (foreign key, on delete cascade).
    snapshots: await pruneTombstones(db, "snapshots", deletedBefore),
    // Pending deliveries are never pruned, however old: they are still being attempted. Attempts cascade.
    webhook_deliveries: await inBatches(async () =>
      count(
        await db
          .deleteFrom("webhook_deliveries")
          .where("id", "in", (eb) =>
            eb
              .selectFrom("webhook_deliveries")
              .select("id")
              .where("status", "in", ["succeeded", "failed"])
              .where("updated_at", "<", finishedBefore)
              .limit(PRUNE_BATCH),
          )
          .execute(),
      ),
    ),
    idempotency_keys: await pruneExpiredKeys(db, new Date(now)),
    name_reservations: await releaseExpiredReservations(db, new Date(now)),
  };
}
