// SnapshotStore.list on a real directory: a record that does not parse is skipped, but a listing that could not be
// read (the snapshots dir unreadable, a record file that fails with a system error) throws instead of reading as
// "this host has nothing", which a host's announcement would turn into removals from the read model.
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tempDir, testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import { nextStamp } from "../host-records.ts";
import { MEMORY_FILE, RECORD_FILE, type SnapshotRecord, SnapshotStore } from "./store.ts";

const data = tempDir("snapshot-store");
let redis: Redis;
let store: SnapshotStore;

beforeAll(() => {
  redis = new Redis(testRedisUrl());
  store = new SnapshotStore(data.dir, redis, uniquePrefix("store"));
});
afterAll(() => {
  redis?.disconnect();
  data.remove();
});

async function writeSnapshot(): Promise<SnapshotRecord> {
  const source = sampleInstance({ state: "Standby" });
  const record: SnapshotRecord = {
    snapshot: sampleSnapshot(source),
    source,
    memory_layout: "file",
    memory_payload: MEMORY_FILE,
    ...nextStamp(undefined, "snapshot.created", null),
  };
  mkdirSync(store.dir(record.snapshot.id), { recursive: true });
  await store.write(record);
  return record;
}

describe("SnapshotStore.list", () => {
  it("skips a record that does not parse and throws on one that cannot be read", async () => {
    const kept = await writeSnapshot();
    const garbled = await writeSnapshot();
    writeFileSync(store.file(garbled.snapshot.id, RECORD_FILE), "{ not json");
    expect((await store.list()).map((record) => record.snapshot.id)).toEqual([kept.snapshot.id]);

    const unreadable = await writeSnapshot();
    rmSync(store.file(unreadable.snapshot.id, RECORD_FILE));
    mkdirSync(store.file(unreadable.snapshot.id, RECORD_FILE)); // reading it fails with EISDIR, a system error
    await expect(store.list()).rejects.toMatchObject({ code: "EISDIR" });
  });

  it("throws when the snapshots directory cannot be listed, and lists nothing when it does not exist", async () => {
    const missing = new SnapshotStore(`${data.dir}/nowhere`, redis, uniquePrefix("store"));
    expect(await missing.list()).toEqual([]);
    const file = `${data.dir}/a-file`;
    writeFileSync(file, "");
    await expect(new SnapshotStore(file, redis, uniquePrefix("store")).list()).rejects.toMatchObject({
      code: "ENOTDIR",
    });
  });
});
