// A throw-away PostgreSQL database for a bench's read model, on BENCH_POSTGRES_URL (default the machine's
// 127.0.0.1:5432): created per run, dropped after it.
import { randomBytes } from "node:crypto";
import pg from "pg";

export const POSTGRES_URL = process.env.BENCH_POSTGRES_URL || "postgres://postgres@127.0.0.1:5432/postgres";

export interface BenchDatabase {
  url: string;
  name: string;
  drop(): Promise<void>;
}

/** A new empty database, or undefined when nothing answers at POSTGRES_URL (the bench then says so and skips it). */
export async function createBenchDatabase(): Promise<BenchDatabase | undefined> {
  const name = `snapfleet_bench_${randomBytes(4).toString("hex")}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 2_000 });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  try {
    await admin(`create database ${name}`);
  } catch {
    return undefined;
  }
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return { url: url.toString(), name, drop: () => admin(`drop database if exists ${name} with (force)`) };
}
