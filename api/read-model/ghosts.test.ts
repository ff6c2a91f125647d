// Which rows a host's complete announcement removes (the pure decision), and the read model it leaves: only complete
// announcements remove, only the announcing host's rows, never a row created after the listing, and a vanished row
// comes back when its host announces it again.
import { afterEach, expect, it } from "vitest";
import type { HostAnnouncement } from "../../shared/events/announcement.ts";
import { openTestDatabase, type TestDatabase } from "../../test/helpers/database.ts";
import { describeEachDialect } from "../../test/helpers/postgres.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import type { DialectName } from "../db/dialect.ts";
import { applyChanges, type Change, changeOfEvent, changesOfAnnouncement } from "./apply.ts";
import { applyAnnouncementPart, isComplete, vanishedRows } from "./ghosts.ts";
import { findInstance, findSnapshot, listSnapshots } from "./queries.ts";

const at = (seconds: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, seconds)).toISOString();

it("removes the rows the announcement lacks that were created before its listing, and only those", () => {
  const held = [
    { key: "snapshot:listed", changedAt: at(1) },
    { key: "snapshot:tombstoned", changedAt: at(1) },
    { key: "snapshot:vanished", changedAt: at(1) },
    { key: "instance:vanished", changedAt: at(9) },
    { key: "snapshot:created-as-listed", changedAt: at(10) },
    { key: "snapshot:created-after-listing", changedAt: at(11) },
  ];
  const announced = new Set(["snapshot:listed", "snapshot:tombstoned"]);
  expect(vanishedRows(held, announced, at(10)).map((row) => row.key)).toEqual([
    "snapshot:vanished",
    "instance:vanished",
  ]);
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

  it("removes a vanished snapshot once all parts are in, keeps other hosts' rows, and brings it back if announced", async () => {
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
    // Part 0 of 2 lacks the vanished snapshot; the announcement is incomplete, so nothing goes.
    expect(await announce(announcement({ parts: 2, instances: [{ instance, version: 1 }] }))).toEqual([]);
    expect(await findSnapshot(db, vanished.id)).toBeDefined();
    // host-b holds a replica of host-a's snapshots and never announces them: its announcement removes none of them.
    expect(await announce(announcement({ host_id: "host-b", announcement_id: "ann_b" }))).toEqual([]);
    expect(await announce(announcement({ part: 1, parts: 2, snapshots: [{ snapshot: kept, version: 1 }] }))).toEqual([
      `snapshot:${vanished.id}`,
    ]);
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
        announcement_id: "ann_2",
        instances: [{ instance, version: 1 }],
        snapshots: [
          { snapshot: kept, version: 1 },
          { snapshot: vanished, version: 2 },
        ],
      }),
    );
    expect((await findSnapshot(db, vanished.id))?.tags).toEqual({ team: "a" });
  });

  it("keeps a row whose state the host made after it took the listing, and removes a vanished instance", async () => {
    const { db, apply, announce } = await open();
    const minutesAgo = (minutes: number) => new Date(Date.now() - minutes * 60_000).toISOString();
    const listedAt = minutesAgo(1);
    // Both requested (created_at, the API's clock) before the listing; the host wrote `old` before it, `fresh` after.
    const old = sampleInstance({ host_id: "host-a", created_at: minutesAgo(3) });
    const fresh = sampleInstance({ host_id: "host-a", created_at: minutesAgo(3) });
    // A row from a host that does not say when it made it: its created_at decides.
    const unstamped = sampleInstance({ host_id: "host-a", created_at: new Date().toISOString() });
    await apply([
      { kind: "instance", instance: old, version: 1, deletedAt: null, changedAt: minutesAgo(2) },
      { kind: "instance", instance: fresh, version: 1, deletedAt: null, changedAt: new Date().toISOString() },
      { kind: "instance", instance: unstamped, version: 1, deletedAt: null },
    ]);
    expect(await announce(announcement({ announced_at: listedAt }))).toEqual([`instance:${old.id}`]);
    expect(await findInstance(db, old.id)).toBeUndefined();
    expect(await findInstance(db, fresh.id)).toBeDefined();
    expect(await findInstance(db, unstamped.id)).toBeDefined();
  });

  it("brings a vanished row back only with a state as new as the one it had, and never once the host deleted it", async () => {
    const { db, apply, announce } = await open();
    const instance = sampleInstance({ host_id: "host-a", created_at: new Date(Date.now() - 60_000).toISOString() });
    const stopped = { ...instance, state: "Stopped" as const };
    await apply([{ kind: "instance", instance: stopped, version: 2, deletedAt: null }]);
    await announce(announcement({}));
    // A late copy of an older event is no sign that the host has it.
    await apply([{ kind: "instance", instance, version: 1, deletedAt: null }]);
    expect(await findInstance(db, instance.id)).toBeUndefined();
    await apply([{ kind: "instance", instance: stopped, version: 3, deletedAt: new Date().toISOString() }]);
    await apply([{ kind: "instance", instance: stopped, version: 2, deletedAt: null }]);
    expect(await findInstance(db, instance.id)).toBeUndefined();
  });
});
