// Applying many changes at once gives what applying them one by one gives: random sequences of changes over a few
// resources (stale and newer versions, deletions, tags, names that collide) are applied both ways to two databases,
// and every table of the read model is compared.
import { afterAll, beforeAll, expect, it } from "vitest";
import { openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { describeEachDialect } from "../../test/helpers/postgres.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import type { Db } from "../db/database.ts";
import { applyChanges, type Change } from "./apply.ts";

const SEQUENCES = 12;
const CHANGES_PER_SEQUENCE = 60;

describeEachDialect("applying changes in runs on %s", (dialect) => {
  let together: TestDatabase;
  let oneByOne: TestDatabase;
  beforeAll(async () => {
    [together, oneByOne] = await Promise.all([
      openTestDatabase("apply-together", dialect),
      openTestDatabase("apply-one-by-one", dialect),
    ]);
  });
  afterAll(async () => {
    await together?.close();
    await oneByOne?.close();
  });

  it("ends in the same read model as applying each change alone, in order", async () => {
    for (let sequence = 0; sequence < SEQUENCES; sequence++) {
      const changes = randomChanges(mulberry32(sequence + 1), `s${sequence}`);
      await together.db.transaction().execute((trx) => applyChanges(trx, changes));
      for (const change of changes) await oneByOne.db.transaction().execute((trx) => applyChanges(trx, [change]));
      const [batched, sequential] = await Promise.all([dump(together.db), dump(oneByOne.db)]);
      expect(batched).toEqual(sequential);
    }
    // The sequences did exercise what matters: deletions, rejected stale versions, tags and held names.
    const final = await dump(oneByOne.db);
    expect(final.instances.some((row) => row.deleted_at !== null)).toBe(true);
    expect(final.snapshots.some((row) => row.deleted_at !== null)).toBe(true);
    expect(final.tags.length).toBeGreaterThan(0);
    expect(final.names.length).toBeGreaterThan(0);
  });

  it("never stores host_online, derived at read time, for instances or snapshots", async () => {
    const instance = { ...sampleInstance({ id: "online-i" }), host_online: true };
    const snapshot = { ...sampleSnapshot(instance, { id: "online-s" }), host_online: false };
    await together.db.transaction().execute((trx) =>
      applyChanges(trx, [
        { kind: "instance", instance, version: 1, deletedAt: null },
        { kind: "snapshot", snapshot, version: 1, deletedAt: null },
      ]),
    );
    for (const table of ["instances", "snapshots"] as const) {
      const rows = await together.db
        .selectFrom(table)
        .select(["id", "resource"])
        .where("id", "like", "online-%")
        .execute();
      expect(rows).toHaveLength(1);
      expect(JSON.parse(rows[0]!.resource)).not.toHaveProperty("host_online");
    }
  });
});

/** A sequence over 4 instances and 6 snapshots of this prefix, with names drawn from 3 per scope. */
function randomChanges(random: () => number, prefix: string): Change[] {
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!;
  const instances = Array.from({ length: 4 }, (_, index) => sampleInstance({ id: `${prefix}i${index}` }));
  const changes: Change[] = [];
  for (let index = 0; index < CHANGES_PER_SEQUENCE; index++) {
    const version = 1 + Math.floor(random() * 8); // repeats and goes back: some changes are stale
    const deletedAt = random() < 0.15 ? new Date(Date.UTC(2026, 0, 1, 0, 0, index)).toISOString() : null;
    if (random() < 0.4) {
      const instance = {
        ...pick(instances),
        name: pick(["a", "b", "c"]),
        state: pick(["Running", "Stopped"] as const),
      };
      changes.push({ kind: "instance", instance, version, deletedAt });
    } else {
      const source = pick(instances.slice(0, 2));
      const snapshot = sampleSnapshot(source, {
        id: `${prefix}s${Math.floor(random() * 6)}`,
        created_at: "2026-01-01T00:00:00.000Z",
        name: pick(["x", "y", null]),
        tags: random() < 0.5 ? { team: pick(["red", "blue"]) } : { team: "red", tier: pick(["1", "2"]) },
      });
      changes.push({ kind: "snapshot", snapshot, version, deletedAt });
    }
  }
  return changes;
}

async function dump(db: Db) {
  return {
    instances: await db.selectFrom("instances").selectAll().orderBy("id").execute(),
    snapshots: await db.selectFrom("snapshots").selectAll().orderBy("id").execute(),
    tags: await db.selectFrom("snapshot_tags").selectAll().orderBy("snapshot_id").orderBy("key").execute(),
    names: await db
      .selectFrom("name_reservations")
      .select(["scope", "name", "resource_id", "pending_until"])
      .orderBy("scope")
      .orderBy("name")
      .execute(),
  };
}

/** A small seeded PRNG: the same sequences every run. */
function mulberry32(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
