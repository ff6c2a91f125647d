// Snapshots in an object store, on a real single-node Ceph cluster's S3 gateway (test/helpers/ceph-cluster.ts, started
// once for the test run) and two worker hosts on real QEMU guests: the upload after a capture and after a compression
// (retried while the bucket is missing), a fork on a host whose disk never held the snapshot while its owner is gone,
// the owner's disk deleted and the host retired (another host adopts the snapshot; it forks there, and the lost source
// instance is restored there from it), and a delete that leaves no
// object behind.
import { existsSync, rmSync } from "node:fs";
import path from "node:path";
import { CreateBucketCommand, DeleteBucketCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, inject, it } from "vitest";
import { subjectOf } from "../shared/events/catalog.ts";
import { decodeEvent, eventStreamKey } from "../shared/events/stream.ts";
import { COMPRESSED_STANDBY_ENTRIES, entriesOf } from "./helpers/archives.ts";
import { waitForTick } from "./helpers/console.ts";
import { jsonOf, testRedisUrl, waitFor } from "./helpers/fixtures.ts";
import { type Fleet, startFleet } from "./helpers/fleet.ts";
import { describeWith } from "./helpers/needs.ts";
import { apiConsole, type CapturePoint, capturedBetween, consolePoint, waitForResume } from "./helpers/resume.ts";

// biome-ignore lint/suspicious/noExplicitAny: API answers read loosely
type Json = any;

describeWith("ceph", "snapshots in an object store (Ceph's S3 gateway)", () => {
  let fleet: Fleet;
  let s3: S3Client;
  const bucket = `snapfleet-${Date.now().toString(36)}-${process.pid}`;
  const api = (pathAndQuery: string) => fleet.api(pathAndQuery);
  let snapshotId: string;
  let captured: CapturePoint;
  let offlineArchive: Buffer;

  const keysOf = async (snapshot: string): Promise<string[]> => {
    const prefix = `snapshots/${snapshot}/`;
    const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix }));
    return (page.Contents ?? []).map((object) => object.Key!.slice(prefix.length)).sort();
  };
  const snapshotOf = async (id: string): Promise<Json> => jsonOf(await api(`/snapshots/${id}`));

  beforeAll(async () => {
    const { endpoint, region, accessKeyId, secretAccessKey } = inject("s3");
    s3 = new S3Client({
      endpoint,
      region,
      credentials: { accessKeyId, secretAccessKey },
      forcePathStyle: true,
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
    });
    // The bucket is made only after the first upload failed: the hosts must show the error and retry.
    fleet = await startFleet(2, {
      env: {
        S3_ENDPOINT: endpoint,
        S3_REGION: region,
        S3_BUCKET: bucket,
        S3_ACCESS_KEY_ID: accessKeyId,
        S3_SECRET_ACCESS_KEY: secretAccessKey,
      },
    });
  }, 300_000);

  afterAll(async () => {
    await fleet?.stop();
    if (s3) {
      await s3.send(new DeleteBucketCommand({ Bucket: bucket })).catch(() => {});
      s3.destroy();
    }
  });

  it("uploads after the capture, shows a failed upload and retries it, and uploads the compressed payload", async () => {
    const created = await fleet.api("/instances", { json: { name: "stored-src", size: "256MB", host_id: "fleet-a" } });
    expect(created.status).toBe(201);
    await waitForTick(api, "stored-src", 2);
    const before = await consolePoint(apiConsole(api, "stored-src"));
    const taken = await fleet.api("/instances/stored-src/snapshots", {
      json: { kind: "Standby", compression: { enabled: true, algorithm: "zstd", level: 1 } },
    });
    const snapshot: Json = await jsonOf(taken);
    expect(taken.status, JSON.stringify(snapshot)).toBe(201);
    captured = capturedBetween(before, await consolePoint(apiConsole(api, "stored-src")));
    snapshotId = snapshot.id;
    expect(snapshot).toMatchObject({ storage: "local", storage_error: null });

    // No bucket yet: the upload fails, the snapshot says so, and forks from the host's copy still work.
    const failed = await waitFor(
      async () => {
        const current = await snapshotOf(snapshotId);
        return current.storage === "error" ? current : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200, what: "storage error" },
    );
    expect(failed.storage_error).toMatch(/object store: upload of .* failed/);
    const local = await fleet.api(`/snapshots/${snapshotId}/fork`, { json: { name: "local-fork" } });
    expect(local.status, JSON.stringify(await jsonOf(local.clone()))).toBe(201);
    expect(await jsonOf(local)).toMatchObject({ host_id: "fleet-a", state: "Running" });

    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    // The retry (5 s, then 10 s …) stores it; compression meanwhile changes the payload and it is uploaded again.
    const stored = await waitFor(
      async () => {
        const current = await snapshotOf(snapshotId);
        return current.storage === "stored" && current.compression_state === "compressed" ? current : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250, what: "stored and compressed" },
    );
    expect(stored.storage_error).toBeNull();
    // The payload entries of the archive one for one (the record rides in the manifest): the compressed memory as its
    // image, no raw memory left.
    expect(await keysOf(snapshotId)).toEqual([
      "device-state.sfc",
      "disk.raw.sfc",
      "manifest.json",
      "memory.raw.sqfs",
      "memory.raw.sqfs.sums",
    ]);

    // The stream told it step by step: the failure, then stored once the compressed image was in.
    const redis = new Redis(testRedisUrl());
    try {
      const entries = await redis.xrange(eventStreamKey(fleet.prefix), "-", "+");
      const events = entries
        .map(([, fields]) => decodeEvent(fields))
        .filter((event) => event?.subject === subjectOf.snapshot(snapshotId))
        .map((event) => event!);
      const types = events.map((event) => event.type);
      expect(types).toContain("snapshot.upload.started");
      expect(types).toContain("snapshot.upload.failed");
      const storedEvents = events.filter((event) => event.type === "snapshot.stored");
      expect(storedEvents.at(-1)!.data).toMatchObject({
        snapshot: { storage: "stored", compression_state: "compressed" },
      });
    } finally {
      redis.disconnect();
    }
  }, 300_000);

  it("forks on a host whose disk never held the snapshot, from the store, while its owner is gone", async () => {
    const owner = fleet.host("fleet-a");
    const other = fleet.host("fleet-b");
    expect(existsSync(path.join(other.dataDir, "snapshots", snapshotId))).toBe(false);
    await owner.capture.stop("SIGTERM");
    await owner.compression.stop("SIGTERM");
    await waitFor(
      async () => {
        const hosts: Json[] = await jsonOf(await api("/hosts"));
        return hosts.find((host) => host.id === "fleet-a")?.online === false || undefined;
      },
      { timeoutMs: 30_000, what: "fleet-a offline" },
    );
    // No host_id: the owner is offline and the snapshot is stored, so the least loaded online host takes it.
    const fork = await fleet.api(`/snapshots/${snapshotId}/fork`, { json: { name: "from-store" } });
    const body: Json = await jsonOf(fork);
    expect(fork.status, JSON.stringify(body)).toBe(201);
    expect(body).toMatchObject({ host_id: "fleet-b", state: "Running" });
    await waitForResume(apiConsole(api, "from-store"), captured);
    expect(other.capture.output()).toContain("snapshot replica pulled");
    expect(existsSync(path.join(other.dataDir, "snapshots", snapshotId, "memory.raw.sqfs"))).toBe(true);

    // An export streams from the store while the owner is offline; a later test imports it (which verifies it all).
    const exported = await fleet.api(`/snapshots/${snapshotId}/export`);
    expect(exported.status, await exported.clone().text()).toBe(200);
    offlineArchive = Buffer.from(await exported.arrayBuffer());
    expect((await entriesOf(offlineArchive)).map((entry) => entry.name)).toEqual(COMPRESSED_STANDBY_ENTRIES);
  }, 300_000);

  it("retires the owner after its disk is gone: another host adopts the snapshot, which forks and restores there", async () => {
    rmSync(fleet.host("fleet-a").dataDir, { recursive: true, force: true });
    const retired = await fleet.api("/hosts/fleet-a", { method: "DELETE" });
    const report: Json = await jsonOf(retired);
    expect(retired.status, JSON.stringify(report)).toBe(200);
    expect(report).toMatchObject({
      host_id: "fleet-a",
      adopted_snapshots: [{ snapshot_id: snapshotId, host_id: "fleet-b" }],
      lost_snapshots: [],
      failed_snapshots: [],
    });
    expect(report.lost_instances).toHaveLength(2);
    const hosts: Json[] = await jsonOf(await api("/hosts"));
    expect(hosts.map((host) => host.id)).toEqual(["fleet-b"]);

    expect(await snapshotOf(snapshotId)).toMatchObject({ host_id: "fleet-b", host_online: true, storage: "stored" });
    const source: Json = await jsonOf(await api("/instances/stored-src"));
    expect(source).toMatchObject({ state: "Unknown", host_online: false });
    expect(source.state_error).toMatch(/^lost: host fleet-a was retired/);

    // The adopted snapshot forks on its new owner, from the copy it pulled, and the guest resumes.
    const fork = await fleet.api(`/snapshots/${snapshotId}/fork`, { json: { name: "after-retire" } });
    const body: Json = await jsonOf(fork);
    expect(fork.status, JSON.stringify(body)).toBe(201);
    expect(body).toMatchObject({ host_id: "fleet-b", state: "Running" });
    await waitForResume(apiConsole(api, "after-retire"), captured);

    // The lost source instance is restored from the adopted snapshot: it comes back under its own id and name on the
    // adopter, and its guest resumes from the snapshot's moment.
    const restore = await fleet.api(`/instances/stored-src/snapshots/${snapshotId}/restore`, { json: {} });
    const restored: Json = await jsonOf(restore);
    expect(restore.status, JSON.stringify(restored)).toBe(200);
    expect(restored).toMatchObject({ id: source.id, name: "stored-src", host_id: "fleet-b", state: "Running" });
    await waitForResume(apiConsole(api, "stored-src"), captured);
    expect(await jsonOf(await api("/instances/stored-src"))).toMatchObject({
      host_id: "fleet-b",
      host_online: true,
      state: "Running",
      state_error: null,
    });

    // A lost instance can be deleted: there is nothing left to stop.
    expect((await fleet.api("/instances/local-fork", { method: "DELETE" })).status).toBe(204);
    expect((await api("/instances/local-fork")).status).toBe(404);
    // Its workers do not come back under its id (they would announce stale records over the adopter's).
    const back = fleet.host("fleet-a").spawnCapture();
    const running = new Promise<string>((resolve) => setTimeout(() => resolve("still running after 30 s"), 30_000));
    const outcome = await Promise.race([back.exited, running]);
    await back.stop("SIGKILL");
    expect(outcome).toBe(1);
    expect(back.output()).toContain("this host was retired");
    // A second call is harmless and reports the same.
    const again: Json = await jsonOf(await fleet.api("/hosts/fleet-a", { method: "DELETE" }));
    expect(again).toMatchObject({ host_id: "fleet-a", retired_at: report.retired_at, failed_snapshots: [] });
  }, 300_000);

  it("imports the archive exported from the store while the owner was offline, and uploads it too", async () => {
    const imported = await fleet.api("/snapshots/import", {
      method: "POST",
      body: offlineArchive,
      headers: { "content-type": "application/x-tar" },
    });
    const copy: Json = await jsonOf(imported);
    expect(imported.status, JSON.stringify(copy)).toBe(201);
    expect(copy).toMatchObject({ storage: "local", compression_state: "compressed" });
    await waitFor(async () => (await snapshotOf(copy.id)).storage === "stored" || undefined, {
      timeoutMs: 60_000,
      intervalMs: 200,
      what: "the imported snapshot stored",
    });
    expect(await keysOf(copy.id)).toContain("memory.raw.sqfs");
    expect((await fleet.api(`/snapshots/${copy.id}`, { method: "DELETE" })).status).toBe(204);
    expect(await keysOf(copy.id)).toEqual([]);
  }, 120_000);

  it("deletes the snapshot's objects and every copy with it", async () => {
    const deleted = await fleet.api(`/snapshots/${snapshotId}`, { method: "DELETE" });
    expect(deleted.status, await deleted.clone().text()).toBe(204);
    expect(await keysOf(snapshotId)).toEqual([]);
    expect(existsSync(path.join(fleet.host("fleet-b").dataDir, "snapshots", snapshotId))).toBe(false);
    const left = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    expect((left.Contents ?? []).map((object) => object.Key)).toEqual([]);
  }, 120_000);
});
