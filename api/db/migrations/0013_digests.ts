// Anti-entropy by digest: the buckets an announcement covers (null: the host's full state), and each host's live rows
// as the digest reads them (an index holding all it reads, so comparing one host's digest reads only that host's rows).
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table announcement_parts add column scope text`.execute(db);
  for (const table of ["instances", "snapshots"]) {
    await sql`create index ${sql.id(`${table}_live_by_host`)} on ${sql.table(table)} (host_id, id, version, missing_since) where deleted_at is null`.execute(
      db,
    );
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ["instances", "snapshots"]) await sql`drop index ${sql.id(`${table}_live_by_host`)}`.execute(db);
  await sql`alter table announcement_parts drop column scope`.execute(db);
}
