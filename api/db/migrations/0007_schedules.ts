// Snapshot schedules: one per instance, owned by the API (BullMQ's job scheduler triggers the runs).
import type { Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("snapshot_schedules")
    .addColumn("instance_id", "text", (column) => column.primaryKey())
    .addColumn("schedule_id", "text", (column) => column.notNull())
    .addColumn("interval", "text", (column) => column.notNull())
    .addColumn("interval_ms", "integer", (column) => column.notNull())
    .addColumn("retention", "text", (column) => column.notNull())
    .addColumn("metadata", "text", (column) => column.notNull())
    .addColumn("name_prefix", "text")
    .addColumn("next_run_at", "text", (column) => column.notNull())
    .addColumn("last_run_at", "text")
    .addColumn("last_snapshot_id", "text")
    .addColumn("last_error", "text")
    .addColumn("created_at", "text", (column) => column.notNull())
    .addColumn("updated_at", "text", (column) => column.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("snapshot_schedules").execute();
}
