// Host-owned versions replace the per-subject sequence numbers Redis used to hand out; a name reservation whose
// outcome is unknown (the API stopped waiting) is held until a deadline.
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  for (const table of ["instances", "snapshots"]) {
    await db.schema.alterTable(table).renameColumn("sequence", "version").execute();
    // Redis sequences and host versions do not compare: let the hosts' next announcement win.
    await sql`update ${sql.table(table)} set version = 0`.execute(db);
  }
  await db.schema.alterTable("name_reservations").addColumn("pending_until", "text").execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable("name_reservations").dropColumn("pending_until").execute();
  for (const table of ["instances", "snapshots"]) {
    await db.schema.alterTable(table).renameColumn("version", "sequence").execute();
  }
}
