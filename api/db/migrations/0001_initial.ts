// Bookkeeping for the event projector: which events have been applied, and where the stream was read to.
import type { Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("processed_events")
    .addColumn("event_id", "text", (column) => column.primaryKey())
    .addColumn("stream_id", "text", (column) => column.notNull())
    .addColumn("applied_at", "text", (column) => column.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("processed_events").execute();
}
