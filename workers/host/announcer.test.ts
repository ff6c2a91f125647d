// The host's side of anti-entropy: a digest of its live records, as the read model computes it over the same rows; a
// bucket-scoped announcement that carries the records and tombstones of its buckets, no other, and says which; and the
// full announcement, unscoped. Real record files in a data dir, a real Redis stream.
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { HostAnnouncement } from "../../shared/events/announcement.ts";
import { bucketOf, digestBuckets } from "../../shared/events/digest.ts";
import { decodeEntry, EventStream, newEventId } from "../../shared/events/stream.ts";
import { TombstoneStore } from "../../shared/host-records.ts";
import { createLogger } from "../../shared/logger.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import { SnapshotStore } from "../../shared/snapshots/store.ts";
import { tempDir, testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import { HostAnnouncer } from "./announcer.ts";
import { InstanceManager } from "./instances.ts";

const HOST = "host-announcer";
const log = createLogger("announcer-test", "silent");
const redis = connectRedis(testRedisUrl(), "worker", 2_000);
const data = tempDir("announcer");
afterAll(async () => {
  await closeRedis(redis);
  data.remove();
});

const lastEvent = (type: string) => ({ id: newEventId(), type, occurred_at: new Date().toISOString(), job_id: null });

/** A host's data dir with 4 instances, 40 snapshots (a few at later versions) and 12 tombstones. */
async function hostWithRecords() {
  const prefix = uniquePrefix("announcer");
  const dataDir = path.join(data.dir, prefix);
  const events = new EventStream(redis, prefix);
  const store = new SnapshotStore(dataDir, redis, prefix);
  const tombstones = new TombstoneStore(dataDir);
  const instances = new InstanceManager({
    dataDir,
    imagesDir: dataDir,
    hostId: HOST,
    drivers: new Map(),
    events,
    tombstones,
    log,
  });
  const keys = { live: [] as Array<{ key: string; version: number }>, tombstoned: [] as string[] };
  for (let index = 0; index < 4; index++) {
    const instance = sampleInstance({ host_id: HOST });
    mkdirSync(path.join(dataDir, "instances", instance.id), { recursive: true });
    const record = { instance, version: index + 1, last_event: lastEvent("instance.created") };
    writeFileSync(instances.files(instance.id).record, JSON.stringify(record));
    keys.live.push({ key: `instance:${instance.id}`, version: index + 1 });
  }
  const source = sampleInstance({ host_id: HOST });
  for (let index = 0; index < 40; index++) {
    const snapshot = sampleSnapshot(source);
    const version = 1 + (index % 3);
    mkdirSync(store.dir(snapshot.id), { recursive: true });
    await store.write({
      snapshot,
      source,
      memory_layout: "none",
      memory_payload: null,
      version,
      last_event: lastEvent("snapshot.created"),
    });
    keys.live.push({ key: `snapshot:${snapshot.id}`, version });
  }
  for (let index = 0; index < 12; index++) {
    const snapshot = sampleSnapshot(source);
    await tombstones.write({
      kind: "snapshot",
      version: 2,
      deleted_at: new Date().toISOString(),
      last_event: lastEvent("snapshot.deleted"),
      snapshot,
    });
    keys.tombstoned.push(`snapshot:${snapshot.id}`);
  }
  const announcer = new HostAnnouncer({
    hostId: HOST,
    instances,
    store,
    tombstones,
    events,
    tombstoneRetentionMs: 3_600_000,
    log,
  });
  const read = async () => (await redis.xrange(events.key, "-", "+")).map(([, fields]) => decodeEntry(fields));
  return { announcer, keys, read };
}

const keysOf = (parts: HostAnnouncement[]) =>
  parts.flatMap((part) => [
    ...part.instances.map(({ instance }) => `instance:${instance.id}`),
    ...part.snapshots.map(({ snapshot }) => `snapshot:${snapshot.id}`),
    ...part.tombstones.map((tombstone) =>
      tombstone.kind === "instance" ? `instance:${tombstone.instance.id}` : `snapshot:${tombstone.snapshot.id}`,
    ),
  ]);

describe("host announcer", () => {
  it("appends one digest of its live records, as the read model computes it over the same rows", async () => {
    const { announcer, keys, read } = await hostWithRecords();
    await announcer.digest();
    const entries = await read();
    expect(entries).toHaveLength(1);
    const [entry] = entries;
    if (entry?.kind !== "digest") throw new Error(`expected a digest, got ${entry?.kind}`);
    expect(entry.digest.host_id).toBe(HOST);
    expect(entry.digest.buckets).toEqual(digestBuckets(keys.live, entry.digest.bucket_count));
  });

  it("announces the records and tombstones of the buckets asked for, no other, and says which", async () => {
    const { announcer, keys, read } = await hostWithRecords();
    const scope = { bucket_count: 4, buckets: [1, 3] };
    await announcer.announce("test", { scope });
    const parts = (await read()).flatMap((entry) => (entry.kind === "announcement" ? [entry.announcement] : []));
    expect(parts.length).toBeGreaterThan(0);
    for (const part of parts) expect(part.scope).toEqual(scope);
    const expected = [...keys.live.map(({ key }) => key), ...keys.tombstoned].filter((key) =>
      scope.buckets.includes(bucketOf(key, 4)),
    );
    expect(keysOf(parts).sort()).toEqual(expected.sort());
    expect(keysOf(parts).some((key) => keys.tombstoned.includes(key))).toBe(true);
  });

  it("announces everything, unscoped, when no buckets are asked for", async () => {
    const { announcer, keys, read } = await hostWithRecords();
    await announcer.announce("test");
    const parts = (await read()).flatMap((entry) => (entry.kind === "announcement" ? [entry.announcement] : []));
    for (const part of parts) expect(part.scope).toBeUndefined();
    expect(keysOf(parts).sort()).toEqual([...keys.live.map(({ key }) => key), ...keys.tombstoned].sort());
  });
});
