// Per-test PostgreSQL databases on the test run's server (test/global-setup.ts), and the read-model suites run on
// each dialect: SQLite always, PostgreSQL when a server is there (else skipped with the reason; CI fails instead).
import { randomBytes } from "node:crypto";
import pg from "pg";
import { describe, inject } from "vitest";
import type { DatabaseTarget } from "../../api/db/database.ts";
import type { DialectName } from "../../api/db/dialect.ts";
import { describeWith } from "./needs.ts";

const serverUrl = (): string => inject("postgresUrl");

/** One suite per read-model dialect, `%s` in `title` naming it; the PostgreSQL one skipped out loud without a server. */
export function describeEachDialect(title: string, body: (dialect: DialectName) => void): void {
  describe(title.replace("%s", "sqlite"), () => body("sqlite"));
  describeWith("postgres", title.replace("%s", "postgres"), () => body("postgres"));
}

/** Runs `statement` on the server's maintenance database. */
async function admin(statement: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl() });
  await client.connect();
  try {
    await client.query(statement);
  } finally {
    await client.end();
  }
}

/** A fresh database `snapfleet_test_<random>`; `drop()` removes it (after every pool on it is closed). */
export async function createTestDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `snapfleet_test_${randomBytes(6).toString("hex")}`;
  await admin(`create database ${name}`);
  const url = new URL(serverUrl());
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => dropTestDatabase(url.toString()) };
}

/** Drops a database made by createTestDatabase, closing whatever is still connected to it. */
export async function dropTestDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  if (!/^snapfleet_test_[0-9a-f]+$/.test(name)) throw new Error(`not a test database: ${name}`);
  await admin(`drop database if exists ${name} with (force)`);
}

/** Where a test's read model lives for `dialect`: a file in `dir`, or a fresh PostgreSQL database. */
export async function testDatabaseTarget(
  dialect: DialectName,
  dir: string,
): Promise<{ target: DatabaseTarget; drop: () => Promise<void> }> {
  const file = `${dir}/read.db`;
  if (dialect === "sqlite") return { target: { file }, drop: async () => {} };
  const database = await createTestDatabase();
  return { target: { url: database.url, file }, drop: database.drop };
}
