// The read model's WAL reaches the database file through the checkpointer's thread: the API's own connection never
// checkpoints (no commit of a projector transaction copies the WAL and fsyncs while reads wait).
import { mkdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { sql } from "kysely";
import { afterEach, expect, it } from "vitest";
import { tempDir } from "../../test/helpers/fixtures.ts";
import { openDatabase } from "./database.ts";
import { startCheckpointer } from "./sqlite-checkpointer.ts";

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

it("tells its owner when its thread ends unasked, so that the owner's connection checkpoints again", async () => {
  // Not a database: every checkpoint fails, and after 20 in a row the thread ends.
  const file = path.join(work.dir, "not-a-database");
  mkdirSync(work.dir, { recursive: true }); // the first test's afterEach removed it
  writeFileSync(file, "garbage ".repeat(1_000));
  const stopped = await new Promise<Error>((resolve, reject) => {
    const checkpointer = startCheckpointer(file, { intervalMs: 10, onStopped: resolve });
    setTimeout(() => {
      checkpointer.stopSync();
      reject(new Error("onStopped was not called within 10 s"));
    }, 10_000).unref();
  });
  expect(stopped.message).toBe("checkpoints keep failing: file is not a database");
});
