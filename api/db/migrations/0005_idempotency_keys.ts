// Idempotency-Key records: per API key, the request's fingerprint and, once answered, the stored response.
import type { Kysely } from "kysely";

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable("idempotency_keys")
    .addColumn("api_key_hash", "text", (column) => column.notNull())
    .addColumn("idempotency_key", "text", (column) => column.notNull())
    .addColumn("fingerprint", "text", (column) => column.notNull())
    .addColumn("response_status", "integer")
    .addColumn("response_content_type", "text")
    .addColumn("response_body", "text")
    .addColumn("created_at", "text", (column) => column.notNull())
    .addColumn("expires_at", "text", (column) => column.notNull())
    .addPrimaryKeyConstraint("idempotency_keys_pk", ["api_key_hash", "idempotency_key"])
    .execute();
  await db.schema.createIndex("idempotency_keys_by_expiry").on("idempotency_keys").columns(["expires_at"]).execute();
}

export async function down(db: Kysely<unknown>): Promise<void> {
  await db.schema.dropTable("idempotency_keys").execute();
}
