// Which API process runs a keyed request still in flight: a retry takes the key over at once when that process is
// gone (its heartbeat stopped), instead of after the abandoned-claim timeout. And the claim's seed: the ids of the
// resources a keyed request makes derive from it, so a retry that takes the key over makes the same ones.
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table idempotency_keys add column owner text`.execute(db);
  await sql`alter table idempotency_keys add column seed text`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table idempotency_keys drop column seed`.execute(db);
  await sql`alter table idempotency_keys drop column owner`.execute(db);
}
