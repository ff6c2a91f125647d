// Which rows a host's complete announcement removes (the pure decision), and the read model it leaves: only complete
// announcements remove, only the announcing host's rows, never a row created after the listing, and a vanished row
// comes back when its host announces it again.
import { afterEach, expect, it } from "vitest";
import type { HostAnnouncement } from "../../shared/events/announcement.ts";
import { bucketOf } from "../../shared/events/digest.ts";
import { openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { describeEachDialect } from "../../test/helpers/postgres.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import type { DialectName } from "../db/dialect.ts";
import { applyChanges, type Change, changeOfEvent, changesOfAnnouncement } from "./apply.ts";
import { applyAnnouncementPart, isComplete, judgeHeldRows } from "./ghosts.ts";
import { findInstance, findSnapshot, listSnapshots } from "./queries.ts";

const at = (seconds: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, seconds)).toISOString();

it("marks what a complete announcement lacks as missing, removes it when the next lacks it too, never what the host made after its listing", () => {
  const row = (key: string, changedAt: string, missingSince: string | null = null) => ({
    key,
    changedAt,
    missingSince,
  });
  const held = [
    row("snapshot:listed", at(1)),
    row("snapshot:tombstoned", at(1)),
    row("snapshot:found-again", at(1), at(5)),
    row("snapshot:missing-before", at(1), at(5)),
    row("instance:missing-now", at(9)),
    row("snapshot:made-as-listed", at(10)),
    row("snapshot:made-after-listing", at(11)),
    row("snapshot:same-announcement-again", at(1), at(10)),
  ];
  const announced = new Set(["snapshot:listed", "snapshot:tombstoned", "snapshot:found-again"]);
  const verdict = judgeHeldRows(held, announced, at(10));
  const keys = (rows: Array<{ key: string }>) => rows.map((entry) => entry.key);
  expect(keys(verdict.vanished)).toEqual(["snapshot:missing-before"]);
  expect(keys(verdict.missing)).toEqual(["instance:missing-now"]);
  expect(keys(verdict.found)).toEqual(["snapshot:found-again"]);
});

it("counts an announcement complete only with every part of the same count", () => {
  const part = (number: number, parts: number) => ({ part: number, parts, announced_at: at(0), resource_keys: "[]" });
  expect(isComplete([part(0, 1)], 1)).toBe(true);
  expect(isComplete([part(1, 2), part(0, 2)], 2)).toBe(true);
  expect(isComplete([part(0, 2)], 2)).toBe(false);
  expect(isComplete([part(0, 2), part(1, 3)], 2)).toBe(false);
  expect(isComplete([part(0, 3), part(2, 3)], 3)).toBe(false);
});

it("takes the host's time of a state from its event and from an announcement", () => {
  const instance = sampleInstance();
  const snapshot = sampleSnapshot(instance);
  const event = { id: "e1", subject: `instance:${instance.id}`, version: 1, occurred_at: at(5) };
  expect(changeOfEvent({ ...event, type: "instance.updated", data: { instance } })?.changedAt).toBe(at(5));
  const announced = changesOfAnnouncement({
    host_id: instance.host_id,
    announcement_id: "ann_t",
    part: 0,
    parts: 1,
    announced_at: at(9),
    instances: [{ instance, version: 1, changed_at: at(6) }],
    snapshots: [{ snapshot, version: 1, changed_at: at(7) }],
    tombstones: [],
  });
  expect(announced.map((change) => change.changedAt)).toEqual([at(6), at(7)]);
});

describeEachDialect("a host's complete announcement on %s", (dialect: DialectName) => {
  let database: TestDatabase | undefined;
  afterEach(async () => {
    await database?.close();
    database = undefined;
  });

  async function open() {
    database = await openTestDatabase("ghosts", dialect);
    const { db } = database;
    const apply = (changes: Change[]) => db.transaction().execute((trx) => applyChanges(trx, changes));
    const announce = (announcement: HostAnnouncement) =>
      db.transaction().execute(async (trx) => {
        await applyChanges(trx, changesOfAnnouncement(announcement));
        return applyAnnouncementPart(trx, announcement);
      });
    return { db, apply, announce };
  }

  const secondsAgo = (seconds: number) => new Date(Date.now() - seconds * 1_000).toISOString();
  const announcement = (overrides: Partial<HostAnnouncement>): HostAnnouncement => ({
    host_id: "host-a",
    announcement_id: "ann_1",
    part: 0,
    parts: 1,
    announced_at: new Date().toISOString(),
    instances: [],
    snapshots: [],
    tombstones: [],
    ...overrides,
  });

  it("removes a vanished snapshot once two complete announcements lacked it, keeps other hosts' rows, brings it back if announced", async () => {
    const { db, apply, announce } = await open();
    const earlier = new Date(Date.now() - 60_000).toISOString();
    const instance = sampleInstance({ host_id: "host-a", created_at: earlier });
    const vanished = sampleSnapshot(instance, { name: "nightly", created_at: earlier, tags: { team: "a" } });
    const kept = sampleSnapshot(instance, { created_at: earlier });
    // A snapshot of host-c, which is offline and announces nothing: host-a's announcement must leave it.
    const otherHosts = sampleSnapshot(sampleInstance({ host_id: "host-c" }), {
      host_id: "host-c",
      created_at: earlier,
    });
    await apply([
      { kind: "instance", instance, version: 1, deletedAt: null },
      { kind: "snapshot", snapshot: vanished, version: 2, deletedAt: null },
      { kind: "snapshot", snapshot: kept, version: 1, deletedAt: null },
      { kind: "snapshot", snapshot: otherHosts, version: 1, deletedAt: null },
    ]);
    // Twice, parts 0 and 1 of 2 that lack the vanished snapshot: part 0 alone is incomplete, so nothing goes.
    const bothParts = async (announcement_id: string, announced_at: string) => {
      const first = { announcement_id, announced_at, parts: 2 };
      expect(await announce(announcement({ ...first, instances: [{ instance, version: 1 }] }))).toEqual([]);
      expect(await findSnapshot(db, vanished.id)).toBeDefined();
      // host-b holds replicas of host-a's snapshots and never announces them: its announcements remove none of them.
      expect(await announce(announcement({ host_id: "host-b", announcement_id: `${announcement_id}-b` }))).toEqual([]);
      return announce(announcement({ ...first, part: 1, snapshots: [{ snapshot: kept, version: 1 }] }));
    };
    expect(await bothParts("ann_1", secondsAgo(20))).toEqual([]);
    expect(await findSnapshot(db, vanished.id)).toBeDefined();
    expect(await bothParts("ann_2", secondsAgo(10))).toEqual([`snapshot:${vanished.id}`]);
    expect(await findSnapshot(db, vanished.id)).toBeUndefined();
    const listed = (await listSnapshots(db, {}, {})).snapshots.map((snapshot) => snapshot.id);
    expect(listed.sort()).toEqual([kept.id, otherHosts.id].sort());
    expect(await findInstance(db, instance.id)).toBeDefined();
    expect(await db.selectFrom("snapshot_tags").selectAll().where("snapshot_id", "=", vanished.id).execute()).toEqual(
      [],
    );
    const names = await db.selectFrom("name_reservations").select("resource_id").execute();
    expect(names.map((row) => row.resource_id)).not.toContain(vanished.id);
    expect(await db.selectFrom("announcement_parts").selectAll().where("host_id", "=", "host-a").execute()).toEqual([]);
    // The host has it after all (moved back from quarantine): its record at the same version brings it back.
    await announce(
      announcement({
        announcement_id: "ann_3",
        instances: [{ instance, version: 1 }],
        snapshots: [
          { snapshot: kept, version: 1 },
          { snapshot: vanished, version: 2 },
        ],
      }),
    );
    expect((await findSnapshot(db, vanished.id))?.tags).toEqual({ team: "a" });
  });

  it("a bucket-scoped announcement judges the rows of its buckets only: others are neither marked nor removed", async () => {
    const { db, apply, announce } = await open();
    const earlier = new Date(Date.now() - 60_000).toISOString();
    const instance = sampleInstance({ host_id: "host-a", created_at: earlier });
    // Two snapshots in different buckets of 4, both gone from the host; the announcements cover the first's only.
    const inScope = sampleSnapshot(instance, { created_at: earlier, name: "in-scope" });
    let outOfScope = sampleSnapshot(instance, { created_at: earlier });
    while (bucketOf(`snapshot:${outOfScope.id}`, 4) === bucketOf(`snapshot:${inScope.id}`, 4)) {
      outOfScope = sampleSnapshot(instance, { created_at: earlier });
    }
    const scope = { bucket_count: 4, buckets: [bucketOf(`snapshot:${inScope.id}`, 4)] };
    await apply([
      { kind: "snapshot", snapshot: inScope, version: 1, deletedAt: null },
      { kind: "snapshot", snapshot: outOfScope, version: 1, deletedAt: null },
    ]);
    const missingSince = async (id: string) =>
      (await db.selectFrom("snapshots").select("missing_since").where("id", "=", id).executeTakeFirstOrThrow())
        .missing_since;
    expect(await announce(announcement({ announcement_id: "ann_1", announced_at: secondsAgo(20), scope }))).toEqual([]);
    expect(await missingSince(inScope.id)).not.toBeNull();
    expect(await missingSince(outOfScope.id)).toBeNull();
    expect(await announce(announcement({ announcement_id: "ann_2", announced_at: secondsAgo(10), scope }))).toEqual([
      `snapshot:${inScope.id}`,
    ]);
    expect(await findSnapshot(db, inScope.id)).toBeUndefined();
    expect(await findSnapshot(db, outOfScope.id)).toBeDefined();
    expect(await missingSince(outOfScope.id)).toBeNull();
    // A full announcement lacking the other one only marks it: its first miss (the scoped ones never judged it).
    expect(await announce(announcement({ announcement_id: "ann_3", instances: [{ instance, version: 1 }] }))).toEqual(
      [],
    );
    expect(await missingSince(outOfScope.id)).not.toBeNull();
    expect(await db.selectFrom("announcement_parts").selectAll().where("host_id", "=", "host-a").execute()).toEqual([]);
  });

  it("keeps a row whose state the host made after it took the listing, or changed since it went missing", async () => {
    const { db, apply, announce } = await open();
    const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();
    // Both requested (created_at, the API's clock) before the listings; the host wrote `old` before them, `fresh` after.
    const old = sampleInstance({ host_id: "host-a", created_at: minutesAgo(5) });
    const fresh = sampleInstance({ host_id: "host-a", created_at: minutesAgo(5) });
    const touched = sampleInstance({ host_id: "host-a", created_at: minutesAgo(5) });
    // A row from a host that does not say when it made it: its created_at decides.
    const unstamped = sampleInstance({ host_id: "host-a", created_at: new Date().toISOString() });
    await apply([
      { kind: "instance", instance: old, version: 1, deletedAt: null, changedAt: minutesAgo(4) },
      { kind: "instance", instance: fresh, version: 1, deletedAt: null, changedAt: new Date().toISOString() },
      { kind: "instance", instance: touched, version: 1, deletedAt: null, changedAt: minutesAgo(4) },
      { kind: "instance", instance: unstamped, version: 1, deletedAt: null },
    ]);
    expect(await announce(announcement({ announcement_id: "ann_1", announced_at: minutesAgo(2) }))).toEqual([]);
    // An event of `touched` after it went missing: the host had it then, so this miss no longer counts.
    await apply([{ kind: "instance", instance: touched, version: 2, deletedAt: null, changedAt: minutesAgo(3) }]);
    expect(await announce(announcement({ announcement_id: "ann_2", announced_at: minutesAgo(1) }))).toEqual([
      `instance:${old.id}`,
    ]);
    expect(await findInstance(db, old.id)).toBeUndefined();
    for (const kept of [fresh, touched, unstamped]) expect(await findInstance(db, kept.id)).toBeDefined();
  });

  it("a row announced again after one miss starts over: the next miss only marks it", async () => {
    const { db, apply, announce } = await open();
    const instance = sampleInstance({ host_id: "host-a", created_at: new Date(Date.now() - 60_000).toISOString() });
    await apply([{ kind: "instance", instance, version: 1, deletedAt: null }]);
    await announce(announcement({ announcement_id: "ann_1", announced_at: secondsAgo(30) }));
    await announce(
      announcement({ announcement_id: "ann_2", announced_at: secondsAgo(20), instances: [{ instance, version: 1 }] }),
    );
    expect(await announce(announcement({ announcement_id: "ann_3", announced_at: secondsAgo(10) }))).toEqual([]);
    expect(await findInstance(db, instance.id)).toBeDefined();
  });

  it("brings a vanished row back only with a state as new as the one it had, and never once the host deleted it", async () => {
    const { db, apply, announce } = await open();
    const instance = sampleInstance({ host_id: "host-a", created_at: new Date(Date.now() - 60_000).toISOString() });
    const stopped = { ...instance, state: "Stopped" as const };
    await apply([{ kind: "instance", instance: stopped, version: 2, deletedAt: null }]);
    await announce(announcement({ announcement_id: "ann_1", announced_at: secondsAgo(20) }));
    await announce(announcement({ announcement_id: "ann_2", announced_at: secondsAgo(10) }));
    // A late copy of an older event is no sign that the host has it.
    await apply([{ kind: "instance", instance, version: 1, deletedAt: null }]);
    expect(await findInstance(db, instance.id)).toBeUndefined();
    await apply([{ kind: "instance", instance: stopped, version: 3, deletedAt: new Date().toISOString() }]);
    await apply([{ kind: "instance", instance: stopped, version: 2, deletedAt: null }]);
    expect(await findInstance(db, instance.id)).toBeUndefined();
  });
});
