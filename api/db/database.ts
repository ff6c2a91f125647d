// The read model's database, owned by the API: a SQLite file (WAL) by default, or PostgreSQL when DATABASE_URL
// is set (several API replicas share it); migrated at boot.
import { mkdirSync } from "node:fs";
import path from "node:path";
import SQLite from "better-sqlite3";
import {
  Kysely,
  type Migration,
  type MigrationProvider,
  Migrator,
  PostgresDialect,
  type SqliteDatabase,
  SqliteDialect,
  sql,
} from "kysely";
import pg from "pg";
import { MIGRATIONS } from "./migrations/index.ts";
import type { Database } from "./schema.ts";
import { startCheckpointer } from "./sqlite-checkpointer.ts";

export type Db = Kysely<Database>;

/** Where the read model lives: `url` (postgres://…) wins over `file`. */
export interface DatabaseTarget {
  url?: string;
  file: string;
}

const POSTGRES_POOL_SIZE = 10;

/** The read model's location from the config: DATABASE_URL when set, else the DATABASE_PATH file. */
export const databaseTarget = (config: { DATABASE_URL?: string; DATABASE_PATH: string }): DatabaseTarget => ({
  url: config.DATABASE_URL,
  file: config.DATABASE_PATH,
});

export function openDatabase(target: DatabaseTarget | string): Db {
  const { url, file } = typeof target === "string" ? { url: undefined, file: target } : target;
  return url ? openPostgres(url) : openSqlite(file);
}

function openSqlite(file: string): Db {
  mkdirSync(path.dirname(file), { recursive: true });
  const sqlite = new SQLite(file);
  sqlite.pragma("journal_mode = WAL");
  sqlite.pragma("synchronous = NORMAL");
  sqlite.pragma("foreign_keys = ON");
  sqlite.pragma("busy_timeout = 5000");
  // Checkpoints run in a worker thread of their own (sqlite-checkpointer.ts), not inside this connection's commits.
  sqlite.pragma("wal_autocheckpoint = 0");
  const checkpointer = startCheckpointer(file, {
    onStopped: (error) => {
      // SQLite's own checkpoint again (every 1,000 WAL pages, its default), inside commits but bounded.
      sqlite.pragma("wal_autocheckpoint = 1000");
      process.emitWarning(`SQLite checkpoint thread ended (${error.message}): checkpoints run in commits again`);
    },
  });
  return new Kysely<Database>({
    dialect: new SqliteDialect({ database: withStatementCache(sqlite, () => checkpointer.stopSync()) }),
  });
}

/** Prepared statements kept per SQL text (least recently used dropped first). */
const STATEMENTS_CACHED = 256;

/**
 * kysely prepares every query it runs; preparing is a good part of a small query's cost (13 % of the projector's
 * time in a burst). The read model's queries are a few hundred shapes, so each is prepared once and reused. A
 * statement still being iterated (a streamed query) is not handed out twice: another is prepared for the caller.
 */
function withStatementCache(sqlite: SQLite.Database, beforeClose: () => void): SqliteDatabase {
  const statements = new Map<string, SQLite.Statement>();
  return {
    close: () => {
      beforeClose();
      sqlite.close();
    },
    prepare(text) {
      const cached = statements.get(text);
      statements.delete(text);
      const statement = cached && !cached.busy ? cached : sqlite.prepare(text);
      statements.set(text, statement);
      if (statements.size > STATEMENTS_CACHED) statements.delete(statements.keys().next().value!);
      return statement;
    },
  };
}

function openPostgres(url: string): Db {
  const pool = new pg.Pool({ connectionString: url, max: POSTGRES_POOL_SIZE });
  // An idle client losing its server must not crash the process; the next query reports the failure.
  pool.on("error", () => {});
  return new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
}

/** Where the database is, without a password: for logs. */
export function describeTarget(target: DatabaseTarget): string {
  if (!target.url) return target.file;
  const url = new URL(target.url);
  url.password = "";
  return url.toString();
}

class InCodeMigrations implements MigrationProvider {
  async getMigrations(): Promise<Record<string, Migration>> {
    return MIGRATIONS;
  }
}

/**
 * Applies every pending migration in order; throws with the failing migration's name. Replicas starting at once
 * are safe: kysely's migrator takes a lock (an advisory lock on PostgreSQL) around the run.
 */
export async function migrateToLatest(db: Db): Promise<string[]> {
  const migrator = new Migrator({ db, provider: new InCodeMigrations() });
  const { error, results } = await migrator.migrateToLatest();
  const failed = results?.find((result) => result.status === "Error");
  if (error) throw new Error(`migration ${failed?.migrationName ?? "?"} failed`, { cause: error });
  return (results ?? []).map((result) => result.migrationName);
}

export async function databaseIsReachable(db: Db): Promise<boolean> {
  try {
    await sql`select 1`.execute(db);
    return true;
  } catch {
    return false;
  }
}
