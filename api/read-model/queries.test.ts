// The list reads on a read model of a few thousand snapshots, some deleted: pages in order without the deleted ones,
// and query plans that read one page's rows rather than every live snapshot (a full index on deleted_at once made
// both planners read and sort them all: 1.3 ms on SQLite and 7 ms on PostgreSQL per page at 10,000 snapshots).
import { CompiledQuery } from "kysely";
import { afterAll, beforeAll, expect, it } from "vitest";
import { openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { describeEachDialect } from "../../test/helpers/postgres.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import type { Db } from "../db/database.ts";
import { dialectOf } from "../db/dialect.ts";
import { applyChanges, changesOfAnnouncement } from "./apply.ts";
import { decodeCursor, listSnapshots, snapshotPageQuery } from "./queries.ts";

const SNAPSHOTS = 3_000;
const DELETED_EVERY = 7; // every seventh snapshot is a tombstone
const PER_BATCH = 100;

describeEachDialect("snapshot list queries on %s", (dialect) => {
  let database: TestDatabase;
  const instance = sampleInstance();
  const start = Date.parse("2026-01-01T00:00:00.000Z");
  const snapshots = Array.from({ length: SNAPSHOTS }, (_, index) =>
    sampleSnapshot(instance, {
      created_at: new Date(start + index * 1_000).toISOString(),
      tags: { batch: `b${Math.floor(index / PER_BATCH)}` },
    }),
  );
  const live = snapshots.filter((_, index) => index % DELETED_EVERY !== 0);

  beforeAll(async () => {
    database = await openTestDatabase("queries", dialect);
    await database.db.transaction().execute((trx) =>
      applyChanges(
        trx,
        changesOfAnnouncement({
          host_id: instance.host_id,
          announcement_id: "a1",
          part: 0,
          parts: 1,
          announced_at: new Date().toISOString(),
          instances: [],
          snapshots: live.map((snapshot) => ({ version: 1, snapshot })),
          tombstones: snapshots
            .filter((_, index) => index % DELETED_EVERY === 0)
            .map((snapshot) => ({ kind: "snapshot", version: 2, deleted_at: snapshot.created_at, snapshot })),
        }),
      ),
    );
    // As a running server has them: PostgreSQL's autovacuum gathers statistics; SQLite has none unless asked.
    if (dialect === "postgres") await database.db.executeQuery(CompiledQuery.raw("analyze"));
  });
  afterAll(() => database?.close());

  it("pages through the live snapshots oldest first, and filters by tag", async () => {
    const seen: string[] = [];
    let after: { createdAt: string; id: string } | undefined;
    for (;;) {
      const page = await listSnapshots(database.db, {}, { limit: 1_000, after });
      seen.push(...page.snapshots.map((snapshot) => snapshot.id));
      if (!page.nextCursor) break;
      after = decodeCursor(page.nextCursor);
    }
    expect(seen).toEqual(live.map((snapshot) => snapshot.id));
    const batch = await listSnapshots(database.db, { tags: { batch: "b3" } }, { limit: 100 });
    expect(batch.snapshots.map((snapshot) => snapshot.id)).toEqual(
      live.filter((snapshot) => snapshot.tags.batch === "b3").map((snapshot) => snapshot.id),
    );
    expect(batch.nextCursor).toBeNull();
  });

  it("reads a page in index order, without sorting the live snapshots, and a tag's through the tag index", async () => {
    const paged = await plan(database.db, snapshotPageQuery(database.db, {}, { limit: 100 }).compile());
    const filtered = await plan(
      database.db,
      snapshotPageQuery(database.db, { tags: { batch: "b3" } }, { limit: 100 }).compile(),
    );
    if (dialect === "sqlite") {
      expect(paged).toContain("USING INDEX snapshots_live_by_created");
      expect(paged).not.toContain("TEMP B-TREE"); // no sort: the index gives the order
      expect(filtered).toContain("USING INDEX snapshot_tags_by_pair");
      expect(filtered).not.toMatch(/SCAN snapshots|snapshots_live_by_created/);
    } else {
      expect(paged).toContain("Index Scan using snapshots_live_by_created");
      expect(paged).not.toContain("Sort");
      // Hash join or nested loop is the planner's call by table size (the latter at 10,000 snapshots).
      expect(filtered).toContain("snapshot_tags_by_pair");
    }
  });
});

/** The database's query plan for a compiled query, as one string. */
async function plan(db: Db, query: CompiledQuery): Promise<string> {
  const explain = dialectOf(db) === "sqlite" ? "explain query plan " : "explain ";
  const result = await db.executeQuery<Record<string, unknown>>(
    CompiledQuery.raw(explain + query.sql, [...query.parameters]),
  );
  return result.rows.map((row) => String(row.detail ?? row["QUERY PLAN"])).join("\n");
}
