// Anti-entropy that also removes: the parts of each host announcement received so far (a complete one is
// authoritative for its host), when the host made each row's state (its clock, to compare with the announcement's), the
// first complete announcement that lacked a row, and the mark of a row removed because two in a row lacked it.
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("announcement_parts")
    .addColumn("announcement_id", "text", (column) => column.notNull())
    .addColumn("part", "integer", (column) => column.notNull())
    .addColumn("parts", "integer", (column) => column.notNull())
    .addColumn("host_id", "text", (column) => column.notNull())
    .addColumn("announced_at", "text", (column) => column.notNull())
    .addColumn("resource_keys", "text", (column) => column.notNull())
    .addPrimaryKeyConstraint("announcement_parts_pk", ["announcement_id", "part"])
    .execute();
  await db.schema.createIndex("announcement_parts_by_host").on("announcement_parts").column("host_id").execute();
  for (const table of ["instances", "snapshots"]) {
    await sql`alter table ${sql.table(table)} add column host_changed_at text`.execute(db);
    await sql`alter table ${sql.table(table)} add column missing_since text`.execute(db);
    await sql`alter table ${sql.table(table)} add column vanished_at text`.execute(db);
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ["instances", "snapshots"]) {
    await sql`alter table ${sql.table(table)} drop column vanished_at`.execute(db);
    await sql`alter table ${sql.table(table)} drop column missing_since`.execute(db);
    await sql`alter table ${sql.table(table)} drop column host_changed_at`.execute(db);
  }
  await db.schema.dropTable("announcement_parts").execute();
}
