// Indexes the retention pass (api/retention.ts) deletes by: when an event was applied, when a resource was deleted,
// when a delivery last changed.
import type { Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createIndex("processed_events_by_applied").on("processed_events").column("applied_at").execute();
  await db.schema.createIndex("instances_by_deleted").on("instances").column("deleted_at").execute();
  await db.schema.createIndex("snapshots_by_deleted").on("snapshots").column("deleted_at").execute();
  await db.schema
    .createIndex("webhook_deliveries_by_status_updated")
    .on("webhook_deliveries")
    .columns(["status", "updated_at"])
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const index of [
    "webhook_deliveries_by_status_updated",
    "snapshots_by_deleted",
    "instances_by_deleted",
    "processed_events_by_applied",
  ]) {
    await db.schema.dropIndex(index).execute();
  }
}
