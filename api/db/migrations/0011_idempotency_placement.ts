// The host a keyed request placed its resource on: a retry that takes the key over (its API process died) places
// it on the same host, where the request may have made it already, instead of choosing again.
import { type Kysely, sql } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`alter table idempotency_keys add column host_id text`.execute(db);
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await sql`alter table idempotency_keys drop column host_id`.execute(db);
}
