// The few places where the read model's two engines differ (SQLite embedded, PostgreSQL for several replicas):
// migrations and queries ask here instead of branching on their own.
import { type Kysely, PostgresAdapter, type RawBuilder, sql } from "kysely";

export type DialectName = "sqlite" | "postgres";

// biome-ignore lint/suspicious/noExplicitAny: any database or transaction, typed or not (migrations see Kysely<unknown>)
export function dialectOf(db: Kysely<any>): DialectName {
  return db.getExecutor().adapter instanceof PostgresAdapter ? "postgres" : "sqlite";
}

/** A column default of the current UTC time as an ISO-8601 string with milliseconds (`2026-11-25T22:16:02.123Z`). */
// biome-ignore lint/suspicious/noExplicitAny: see dialectOf
export function nowIsoDefault(db: Kysely<any>): RawBuilder<string> {
  return dialectOf(db) === "postgres"
    ? sql`(to_char(now() at time zone 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))`
    : sql`(strftime('%Y-%m-%dT%H:%M:%fZ','now'))`;
}

/** Whether reads inside a transaction must lock the rows they will update (SQLite has one writer at a time). */
// biome-ignore lint/suspicious/noExplicitAny: see dialectOf
export const needsRowLocks = (db: Kysely<any>): boolean => dialectOf(db) === "postgres";
