// Hosts an operator retired (DELETE /hosts/{id}): gone for good with their disks. The decision is the API's own fact,
// not derived from any host, so it lives here rather than in Redis, which may lose it.
import type { Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("retired_hosts")
    .addColumn("host_id", "text", (column) => column.primaryKey())
    .addColumn("retired_at", "text", (column) => column.notNull())
    .execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("retired_hosts").execute();
}
