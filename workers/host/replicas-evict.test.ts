// PAYLOAD_CACHE_BYTES on a host's own snapshots, against the test run's Ceph S3 gateway and the test Redis: an
// original the store holds loses its payload files but keeps its record, is pulled back byte for byte before a use,
// and is kept whenever the store's copy is not exactly its payload (an object gone, another compression state, a
// manifest this fleet did not sign), while it is in use, and while it is not stored yet. No guest: disk-only records
// with real sparse payload files, uploaded by the compression worker's own upload.
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdir, open, utimes } from "node:fs/promises";
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { filesInUseUnder } from "../../shared/cache-budget.ts";
import { EventStream } from "../../shared/events/stream.ts";
import { createLogger } from "../../shared/logger.ts";
import { ObjectStore } from "../../shared/object-store.ts";
import { PayloadClient } from "../../shared/payload-client.ts";
import { closeRedis } from "../../shared/redis.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import { prepareExport } from "../../shared/snapshots/export-files.ts";
import { DISK_FILE, SnapshotStore } from "../../shared/snapshots/store.ts";
import { s3ClientFor } from "../../test/helpers/ceph-cluster.ts";
import { tempDir, testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { describeWith } from "../../test/helpers/needs.ts";
import { forgetPrefix } from "../../test/helpers/redis-loss.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import { uploadSnapshot } from "../compression/upload-snapshot.ts";
import { Replicas } from "./replicas.ts";

const HOST = "host-evict";
const MiB = 1024 ** 2;
const HOUR_AGO = () => new Date(Date.now() - 3_600_000);

describeWith("ceph", "PAYLOAD_CACHE_BYTES on a host's own snapshots (Ceph's S3 gateway)", () => {
  const prefix = uniquePrefix("evict");
  const redis = new Redis(testRedisUrl());
  const work = tempDir("replicas-evict");
  const store = new SnapshotStore(work.dir, redis, prefix);
  const bucket = `evict-${Date.now().toString(36)}-${process.pid}`;
  const log = createLogger("replicas-evict-test", "silent");
  const events = new EventStream(redis, prefix);
  const signingKey = randomBytes(32);
  let s3: S3Client;
  let objects: ObjectStore;
  let replicas: Replicas;

  beforeAll(async () => {
    const settings = inject("s3");
    s3 = s3ClientFor(settings);
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    objects = new ObjectStore({ bucket, ...settings, signingKey });
    replicas = new Replicas({
      hostId: HOST,
      store,
      redis,
      prefix,
      payloads: new PayloadClient({ secret: "unused" }),
      objects,
      events,
      // Every stored payload is beyond this budget: each one that may go, goes.
      cache: { budgetBytes: 1, inUse: async (id) => (await filesInUseUnder(store.dir(id))).size > 0 },
      log,
    });
  });

  afterAll(async () => {
    for (const id of created) await objects?.deleteSnapshot(id).catch(() => 0);
    objects?.close();
    s3?.destroy();
    await forgetPrefix(redis, prefix);
    await closeRedis(redis);
    work.remove();
  });

  const created: string[] = [];
  const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");
  const allocated = (file: string) => statSync(file).blocks * 512;

  /**
   * A Stopped snapshot this host owns: a 64 MiB sparse disk with 3 MiB of random data in it, uploaded to the store
   * by the compression worker's upload unless `upload` is false. Its directory was last used an hour ago.
   */
  async function original({ upload = true } = {}): Promise<Snapshot> {
    const source = sampleInstance({ host_id: HOST, overlay_size: "64MB" });
    const snapshot = sampleSnapshot(source, { kind: "Stopped", host_id: HOST, storage: "local" });
    created.push(snapshot.id);
    await mkdir(store.dir(snapshot.id), { recursive: true });
    const disk = await open(store.file(snapshot.id, DISK_FILE), "w");
    await disk.truncate(64 * MiB);
    for (const at of [0, 20, 50]) await disk.write(randomBytes(MiB), 0, MiB, at * MiB);
    await disk.close();
    await store.write({ snapshot, source, memory_layout: "none", memory_payload: null, version: 1, last_event: null });
    if (upload) {
      expect(
        await uploadSnapshot({ store, objects, events, redis, prefix, log }, snapshot.id, new AbortController().signal),
      ).toBe("stored");
    }
    await utimes(store.dir(snapshot.id), HOUR_AGO(), HOUR_AGO());
    return snapshot;
  }

  it("evicts a stored original's payload but keeps its record, and pulls it back byte for byte before a use", async () => {
    const stored = await original();
    const unstored = await original({ upload: false });
    const busy = await original();
    const disk = store.file(stored.id, DISK_FILE);
    const before = { sha256: sha256(disk), allocated: allocated(disk) };
    const recordBefore = (await store.read(stored.id))!;
    expect(recordBefore.snapshot.storage).toBe("stored");

    // A VM maps the busy one's disk (this process holds it open, as QEMU would).
    const held = await open(store.file(busy.id, DISK_FILE), "r");
    let report: Awaited<ReturnType<Replicas["enforceBudget"]>>;
    try {
      report = await replicas.enforceBudget();
    } finally {
      await held.close();
    }
    expect(report.evicted).toEqual([stored.id]);
    expect(existsSync(disk)).toBe(false);
    expect(existsSync(store.file(unstored.id, DISK_FILE))).toBe(true); // not in the store: never evicted
    expect(existsSync(store.file(busy.id, DISK_FILE))).toBe(true);
    // The record stays, marked, at the same version: readers see the same snapshot.
    const marked = (await store.read(stored.id))!;
    expect(marked.evicted_at).toEqual(expect.any(String));
    expect({ ...marked, evicted_at: undefined }).toEqual({ ...recordBefore, evicted_at: undefined });
    expect((await store.list()).map((record) => record.snapshot.id)).toContain(stored.id);
    // Nothing serves it from this disk until it is back.
    await expect(prepareExport(store, stored.id)).rejects.toMatchObject({ code: "unavailable" });

    const [first, second] = await Promise.all([replicas.ensureLocal(stored.id), replicas.ensureLocal(stored.id)]);
    expect(first.pulled_bytes).toBeGreaterThan(0);
    expect(second.pulled_bytes).toBe(0); // one pull, shared
    expect(sha256(disk)).toBe(before.sha256);
    expect(allocated(disk)).toBeLessThanOrEqual(before.allocated * 1.01); // as sparse as it was
    expect(await store.read(stored.id)).toEqual(recordBefore);
    expect((await prepareExport(store, stored.id)).files.map((file) => file.name)).toEqual(["disk.raw.sfc"]);
    // Used just now: within its grace period, whatever the budget says.
    expect((await replicas.enforceBudget()).evicted).not.toContain(stored.id);
  });

  it("keeps an original whose copy in the store is not exactly its payload", async () => {
    const objectGone = await original();
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: objects.key(objectGone.id, "disk.raw.sfc") }));
    const otherState = await original();
    const manifest = (await objects.readManifest(otherState.id))!;
    await objects.putManifest(otherState.id, { ...manifest, compression_state: "compressed" });
    const forged = await original();
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: objects.key(forged.id, "manifest.json"),
        Body: JSON.stringify({ manifest: JSON.stringify(manifest), signature: "0".repeat(64) }),
      }),
    );
    const fine = await original();

    const report = await replicas.enforceBudget();
    expect(report.evicted).toContain(fine.id);
    for (const kept of [objectGone, otherState, forged]) {
      expect(report.evicted).not.toContain(kept.id);
      expect(existsSync(store.file(kept.id, DISK_FILE))).toBe(true);
      expect((await store.read(kept.id))!.evicted_at).toBeUndefined();
    }

    // The store loses the evicted one's object afterwards: the pull back fails, and nothing here is removed.
    await s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: objects.key(fine.id, "disk.raw.sfc") }));
    await expect(replicas.ensureLocal(fine.id)).rejects.toMatchObject({ code: "unavailable" });
    expect((await store.read(fine.id))!.evicted_at).toEqual(expect.any(String));
  });
});
