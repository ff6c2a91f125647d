import { sql } from "kysely";
import { afterEach, expect, it } from "vitest";
import type { HostAnnouncement } from "../../shared/events/announcement.ts";
import { subjectOf } from "../../shared/events/catalog.ts";
import { bucketOf, type DigestLine, digestBuckets } from "../../shared/events/digest.ts";
import { EventStream, eventStreamKey } from "../../shared/events/stream.ts";
import { createLogger } from "../../shared/logger.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import { openTestDatabase } from "../../test/helpers/database.ts";
import { testRedisUrl, uniquePrefix, waitFor } from "../../test/helpers/fixtures.ts";
import { describeEachDialect } from "../../test/helpers/postgres.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import type { Db } from "../db/database.ts";
import type { DialectName } from "../db/dialect.ts";
import { type DeadLetter, listDeadLetters } from "./dead-letters.ts";
import type { BucketResync } from "./digests.ts";
import { Projector, type ProjectorOptions, READ_MODEL_GROUP } from "./projector.ts";
import { findInstance, findSnapshot, listSnapshots } from "./queries.ts";

const log = createLogger("projector-test", "silent");
const v = (version: number) => ({ version });
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function setup(dialect: DialectName) {
  const prefix = uniquePrefix("proj");
  const database = await openTestDatabase("proj", dialect);
  const { db } = database;
  const writer = connectRedis(testRedisUrl(), "worker", 1_000);
  const stream = new EventStream(writer, prefix);
  const projectors: Projector[] = [];
  const connections = [writer];
  const newProjector = (consumer = "replica-a", claimIdleMs = 30_000, extra: Partial<ProjectorOptions> = {}) => {
    const connection = connectRedis(testRedisUrl(), "worker", 1_000);
    connections.push(connection);
    const projector = new Projector({ db, redis: connection, prefix, log, consumer, claimIdleMs, ...extra });
    projectors.push(projector);
    return projector;
  };
  cleanups.push(async () => {
    for (const projector of projectors) await projector.stop();
    for (const connection of connections) await closeRedis(connection);
    await database.close();
  });
  return { prefix, db, stream, writer, newProjector };
}

const countProcessed = async (db: Db) =>
  Number(
    (
      await db
        .selectFrom("processed_events")
        .select((eb) => eb.fn.countAll().as("n"))
        .executeTakeFirstOrThrow()
    ).n,
  );

describeEachDialect("projector on %s", (dialect) => {
  it("applies resource events and lets a caller wait for one", async () => {
    const { db, stream, newProjector } = await setup(dialect);
    const projector = newProjector();
    projector.start();
    await projector.ready;
    const instance = sampleInstance();
    await stream.append("instance.created", subjectOf.instance(instance.id), { instance }, v(1));
    const snapshot = sampleSnapshot(instance, { name: "base", tags: { team: "backend" } });
    const { event } = await stream.append("snapshot.created", subjectOf.snapshot(snapshot.id), { snapshot }, v(1));
    await projector.waitFor(event.id, 5_000);
    expect(await findInstance(db, instance.name)).toEqual(instance);
    expect(await findSnapshot(db, snapshot.id)).toEqual(snapshot);
    const page = await listSnapshots(db, { tags: { team: "backend" } }, {});
    expect(page.snapshots.map((s) => s.id)).toEqual([snapshot.id]);
  });

  it("applies an event appended twice once, though both copies land in one transaction", async () => {
    const { db, stream, newProjector } = await setup(dialect);
    const instance = sampleInstance();
    const subject = subjectOf.instance(instance.id);
    // Before the projector starts: all three entries come in one read, and one transaction applies them.
    const first = await stream.append("instance.created", subject, { instance }, v(1));
    await stream.append("instance.created", subject, { instance }, { ...v(1), id: first.event.id });
    const stopped = { ...instance, state: "Stopped" as const };
    const last = await stream.append("instance.updated", subject, { instance: stopped }, v(2));
    const projector = newProjector();
    const applied: string[] = [];
    projector.onApplied((entry) => {
      if (entry.kind === "event") applied.push(entry.event.id);
    });
    projector.start();
    await projector.waitFor(last.event.id, 5_000);
    expect(applied).toEqual([first.event.id, last.event.id]);
    expect(await countProcessed(db)).toBe(2);
    expect(await findInstance(db, instance.id)).toEqual(stopped);
  });

  it("follows a snapshot through its compression states, whatever order its versions arrive in", async () => {
    const { db, stream, newProjector } = await setup(dialect);
    const projector = newProjector();
    projector.start();
    await projector.ready;
    const instance = sampleInstance();
    const snapshot = sampleSnapshot(instance, { compression: { enabled: true, algorithm: "zstd", level: 1 } });
    const subject = subjectOf.snapshot(snapshot.id);
    await stream.append("snapshot.created", subject, { snapshot }, v(1));
    const compressing = { ...snapshot, compression_state: "compressing" as const };
    const done = {
      ...snapshot,
      compression_state: "compressed" as const,
      compressed_size_bytes: 10,
      uncompressed_size_bytes: 100,
    };
    const started = await stream.append("snapshot.compression.started", subject, { snapshot: compressing }, v(2));
    await projector.waitFor(started.event.id, 5_000);
    expect(await findSnapshot(db, snapshot.id)).toEqual(compressing);
    await stream.append("snapshot.compression.completed", subject, { snapshot: done }, v(3));
    // An older version arriving late (a re-appended event, a slow producer) changes nothing.
    const late = await stream.append("snapshot.compression.started", subject, { snapshot: compressing }, v(2));
    await projector.waitFor(late.event.id, 5_000);
    expect(await findSnapshot(db, snapshot.id)).toEqual(done);
  });

  it("finishes entries a dead replica read but never acknowledged, without duplicates", async () => {
    const { db, stream, writer, prefix, newProjector } = await setup(dialect);
    const first = newProjector("replica-a");
    first.start();
    await first.ready; // creates the group
    await first.stop();
    const instance = sampleInstance();
    const appended = [];
    for (let index = 0; index < 5; index++) {
      appended.push(
        await stream.append(
          "instance.updated",
          subjectOf.instance(instance.id),
          { instance: { ...instance, vcpus: index + 1 } },
          v(index + 1),
        ),
      );
    }
    // A "crashed" API replica: it took the entries from the group and died before acknowledging them.
    await writer.call(
      "XREADGROUP",
      "GROUP",
      READ_MODEL_GROUP,
      "replica-dead",
      "COUNT",
      5,
      "STREAMS",
      eventStreamKey(prefix),
      ">",
    );
    const pendingBefore = (await writer.xpending(eventStreamKey(prefix), READ_MODEL_GROUP)) as [number];
    expect(pendingBefore[0]).toBe(5);
    // Another replica takes them over once they have been idle for its claim time.
    const second = newProjector("replica-b", 200);
    second.start();
    await second.ready;
    await second.waitFor(appended.at(-1)!.event.id, 5_000);
    expect((await findInstance(db, instance.id))?.vcpus).toBe(5);
    expect(await countProcessed(db)).toBe(5);
    await waitFor(async () => {
      const pending = (await writer.xpending(eventStreamKey(prefix), READ_MODEL_GROUP)) as [number];
      return pending[0] === 0 ? true : undefined;
    });
  });

  it("dead-letters a poison entry and an unreadable one; their neighbours and later events are applied", async () => {
    const { db, stream, writer, prefix, newProjector } = await setup(dialect);
    // PostgreSQL refuses a NUL byte in text; on SQLite a trigger refuses the tag value the same way.
    const poisonValue = dialect === "postgres" ? "bad\u0000tag" : "poison";
    if (dialect === "sqlite") {
      await sql`CREATE TRIGGER refuse_poison BEFORE INSERT ON snapshot_tags WHEN NEW.value = 'poison'
        BEGIN SELECT RAISE(ABORT, 'poison tag'); END`.execute(db);
    }
    const instance = sampleInstance();
    const [before, poison, after] = ["before", "poison", "after"].map((name) =>
      sampleSnapshot(instance, { name, tags: name === "poison" ? { t: poisonValue } : {} }),
    );
    const created = (snapshot: typeof before) =>
      stream.append("snapshot.created", subjectOf.snapshot(snapshot!.id), { snapshot: snapshot! }, v(1));
    // Appended before the projector starts: all four come in one read, the three events in one transaction.
    await created(before);
    const bad = await created(poison);
    const unreadable = await writer.xadd(eventStreamKey(prefix), "*", "event", '{"id":"evt_x","type":"no.such"}');
    const last = await created(after);
    const told: Array<Omit<DeadLetter, "id">> = [];
    const projector = newProjector("replica-a", 30_000, { maxApplyAttempts: 3, onDeadLetter: (l) => told.push(l) });
    projector.start();

    await projector.waitFor(last.event.id, 5_000); // the failed transaction was re-applied entry by entry
    expect(await findSnapshot(db, before!.id)).toEqual(before);
    expect(await findSnapshot(db, after!.id)).toEqual(after);
    await expect.poll(async () => (await listDeadLetters(writer, prefix, 10)).length, { timeout: 15_000 }).toBe(2);
    const letters = await listDeadLetters(writer, prefix, 10);
    expect(letters.map(({ stream_id, attempts }) => ({ stream_id, attempts }))).toEqual([
      { stream_id: bad.streamId, attempts: 3 },
      { stream_id: unreadable, attempts: 1 },
    ]);
    expect(letters[0]!.fields[1]).toContain(poison!.id);
    expect(told).toHaveLength(2);
    expect(await findSnapshot(db, poison!.id)).toBeUndefined();

    // The group moved on: nothing is left pending, and a new event applies at once.
    await expect
      .poll(async () => ((await writer.xpending(eventStreamKey(prefix), READ_MODEL_GROUP)) as [number])[0])
      .toBe(0);
    const next = sampleSnapshot(instance, { name: "next" });
    await projector.waitFor((await created(next)).event.id, 5_000);
    expect(await findSnapshot(db, next.id)).toEqual(next);
  });

  it("tombstones deleted snapshots and frees their name", async () => {
    const { db, stream, newProjector } = await setup(dialect);
    const projector = newProjector();
    projector.start();
    await projector.ready;
    const instance = sampleInstance();
    const snapshot = sampleSnapshot(instance, { name: "nightly" });
    await db
      .insertInto("name_reservations")
      .values({ scope: `snapshot:${instance.id}`, name: "nightly", resource_id: snapshot.id })
      .execute();
    await stream.append("snapshot.created", subjectOf.snapshot(snapshot.id), { snapshot }, v(1));
    const deleted = await stream.append("snapshot.deleted", subjectOf.snapshot(snapshot.id), { snapshot }, v(2));
    await projector.waitFor(deleted.event.id, 5_000);
    expect(await findSnapshot(db, snapshot.id)).toBeUndefined();
    expect(await db.selectFrom("name_reservations").selectAll().execute()).toEqual([]);
    // A late event for the deleted snapshot does not bring it back.
    const late = await stream.append(
      "snapshot.compression.progress",
      subjectOf.snapshot(snapshot.id),
      { snapshot, bytes_done: 1, bytes_total: 2 },
      v(9),
    );
    await projector.waitFor(late.event.id, 5_000);
    expect(await findSnapshot(db, snapshot.id)).toBeUndefined();
  });

  it("shares the stream between replicas: each event applied once, waited for on either", async () => {
    const { db, stream, newProjector } = await setup(dialect);
    const replicas = [newProjector("replica-a"), newProjector("replica-b")];
    for (const replica of replicas) replica.start();
    await Promise.all(replicas.map((replica) => replica.ready));
    const instance = sampleInstance();
    const events = [];
    for (let index = 0; index < 20; index++) {
      const snapshot = sampleSnapshot(instance, { name: `s-${index}` });
      events.push((await stream.append("snapshot.created", subjectOf.snapshot(snapshot.id), { snapshot }, v(1))).event);
    }
    // Each replica sees every event as applied, whichever of them applied it.
    for (const event of events) {
      await replicas[0]!.waitFor(event.id, 5_000);
      await replicas[1]!.waitFor(event.id, 5_000);
    }
    expect(await countProcessed(db)).toBe(20);
    expect((await listSnapshots(db, {}, {})).snapshots).toHaveLength(20);
  });

  it("converges from host announcements: newer versions win, tombstones delete, names are held again", async () => {
    const { db, stream, newProjector } = await setup(dialect);
    const projector = newProjector();
    projector.start();
    await projector.ready;
    const instance = sampleInstance({ name: "web-1" });
    const snapshot = sampleSnapshot(instance, { name: "nightly" });
    const gone = sampleSnapshot(instance, { name: "old" });
    // The read model saw an early state of the instance, and a snapshot the host has since deleted.
    await stream.append("instance.created", subjectOf.instance(instance.id), { instance }, v(1));
    const seen = await stream.append("snapshot.created", subjectOf.snapshot(gone.id), { snapshot: gone }, v(1));
    await projector.waitFor(seen.event.id, 5_000);
    const stopped = { ...instance, state: "Stopped" as const };
    const announce = (part: number, parts: number, body: Partial<HostAnnouncement>) =>
      stream.announce({
        host_id: instance.host_id,
        announcement_id: "ann_test",
        part,
        parts,
        announced_at: new Date().toISOString(),
        instances: [],
        snapshots: [],
        tombstones: [],
        ...body,
      });
    await announce(0, 2, { instances: [{ instance: stopped, version: 3 }], snapshots: [{ snapshot, version: 2 }] });
    await announce(1, 2, {
      tombstones: [{ kind: "snapshot", version: 2, deleted_at: new Date().toISOString(), snapshot: gone }],
    });
    await waitFor(async () => ((await findSnapshot(db, gone.id)) === undefined ? true : undefined));
    expect((await findInstance(db, instance.id))?.state).toBe("Stopped");
    expect(await findSnapshot(db, snapshot.id)).toEqual(snapshot);
    const names = await db.selectFrom("name_reservations").select(["scope", "name", "resource_id"]).execute();
    expect(names).toEqual(
      expect.arrayContaining([
        { scope: "instance", name: "web-1", resource_id: instance.id },
        { scope: `snapshot:${instance.id}`, name: "nightly", resource_id: snapshot.id },
      ]),
    );
    expect(names.some((row) => row.resource_id === gone.id)).toBe(false);
    // Announcing the same state again, or an older one, changes nothing.
    await announce(0, 1, { instances: [{ instance, version: 2 }] });
    const marker = await stream.append(
      "instance.updated",
      subjectOf.instance(instance.id),
      { instance: stopped },
      v(3),
    );
    await projector.waitFor(marker.event.id, 5_000);
    expect((await findInstance(db, instance.id))?.state).toBe("Stopped");
  });

  it("compares a host's digest with what it applied before it, and asks for the buckets that differ only", async () => {
    const { stream, newProjector } = await setup(dialect);
    const asked: BucketResync[] = [];
    const projector = newProjector("replica-a", 30_000, {
      resyncBuckets: async (resync) => {
        asked.push(resync);
      },
    });
    const instance = sampleInstance({ host_id: "host-d" });
    const snapshot = sampleSnapshot(instance);
    const digest = (digest_id: string, lines: DigestLine[]) =>
      stream.digest({
        host_id: "host-d",
        digest_id,
        digested_at: new Date().toISOString(),
        bucket_count: 8,
        buckets: digestBuckets(lines, 8),
      });
    const instanceLine = { key: `instance:${instance.id}`, version: 1 };
    const snapshotLine = { key: `snapshot:${snapshot.id}`, version: 1 };
    // Appended before the projector starts: the event and the digest come in one read; the digest sees the event.
    await stream.append("instance.created", subjectOf.instance(instance.id), { instance }, v(1));
    await digest("dig_same", [instanceLine]);
    // The host wrote the snapshot's record, and died before appending its event.
    await digest("dig_more", [instanceLine, snapshotLine]);
    const marker = await stream.append("instance.updated", subjectOf.instance(instance.id), { instance }, v(2));
    projector.start();
    await projector.waitFor(marker.event.id, 5_000);
    await waitFor(() => asked.length > 0 || undefined);
    expect(asked).toEqual([
      { hostId: "host-d", digestId: "dig_more", scope: { bucket_count: 8, buckets: [bucketOf(snapshotLine.key, 8)] } },
    ]);
  });
});
