// The read model's WAL reaches the database file through the checkpointer's thread: the API's own connection never
// checkpoints (no commit of a projector transaction copies the WAL and fsyncs while reads wait).
import { statSync } from "node:fs";
import path from "node:path";
import { sql } from "kysely";
import { afterEach, expect, it } from "vitest";
import { tempDir } from "../../test/helpers/fixtures.ts";
import { openDatabase } from "./database.ts";

const work = tempDir("checkpointer");
afterEach(() => work.remove());

it("moves committed pages from the WAL into the database file while the writing connection never checkpoints", async () => {
  const file = path.join(work.dir, "read-model.sqlite");
  const db = openDatabase(file);
  try {
    await sql`create table filler (id integer primary key, body text)`.execute(db);
    const body = "x".repeat(3_000);
    for (let row = 0; row < 2_000; row++) await sql`insert into filler (body) values (${body})`.execute(db);
    const { rows } = await sql<{ wal_autocheckpoint: number }>`pragma wal_autocheckpoint`.execute(db);
    expect(rows).toEqual([{ wal_autocheckpoint: 0 }]); // this connection's commits never checkpoint
    // The database file holds the rows within a few intervals: the checkpointer copied them there.
    const deadline = Date.now() + 10_000;
    while (statSync(file).size < 2_000 * 3_000 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(statSync(file).size).toBeGreaterThan(2_000 * 3_000);
  } finally {
    await db.destroy();
  }
});
