// Anti-entropy by digest: each host's live rows as the digest reads them, in an index holding all it reads (deleted_at
// too, null throughout, or SQLite reads the table to check it): comparing one host's digest reads that host's index
// entries only, not the whole table.
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  for (const table of ["instances", "snapshots"]) {
    await sql`create index ${sql.id(`${table}_live_by_host`)} on ${sql.table(table)} (host_id, id, version, missing_since, deleted_at) where deleted_at is null`.execute(
      db,
    );
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ["instances", "snapshots"]) await sql`drop index ${sql.id(`${table}_live_by_host`)}`.execute(db);
}
