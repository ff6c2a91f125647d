// PAYLOAD_CACHE_BYTES on a host's own snapshots, end to end: one host on real QEMU guests with a store on the test
// run's Ceph S3 gateway and a budget every payload exceeds. A stored, compressed snapshot loses its payload files
// (its record stays, and the API shows the same snapshot); a fork of it pulls them back from the store and the guest
// resumes from the snapshot's moment; while that fork maps the payload, later checks evict other snapshots, not it.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { waitForTick } from "./helpers/console.ts";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { type Fleet, startFleet } from "./helpers/fleet.ts";
import { describeWith } from "./helpers/needs.ts";
import { emptyAndDeleteBucket, s3Env } from "./helpers/object-store.ts";
import { apiConsole, capturedBetween, consolePoint, waitForResume } from "./helpers/resume.ts";

// biome-ignore lint/suspicious/noExplicitAny: API answers read loosely
type Json = any;

describeWith("ceph", "a host's own snapshots evicted to the object store (PAYLOAD_CACHE_BYTES)", () => {
  let fleet: Fleet;
  let bucket: string | undefined;
  const api = (pathAndQuery: string) => fleet.api(pathAndQuery);
  const snapshotOf = async (id: string): Promise<Json> => jsonOf(await api(`/snapshots/${id}`));
  const dirOf = (id: string) => path.join(fleet.host("fleet-a").dataDir, "snapshots", id);
  const recordOf = (id: string): Json => JSON.parse(readFileSync(path.join(dirOf(id), "snapshot.json"), "utf8"));

  beforeAll(async () => {
    const store = await s3Env();
    bucket = store.S3_BUCKET;
    fleet = await startFleet(1, {
      env: {
        ...store,
        // Every payload is beyond the budget: each one that may go, goes, a second after its last use.
        PAYLOAD_CACHE_BYTES: "1",
        PAYLOAD_CACHE_GRACE_MS: "1000",
        CACHE_CHECK_INTERVAL_MS: "500",
      },
    });
  }, 300_000);

  afterAll(async () => {
    await fleet?.stop();
    if (bucket) await emptyAndDeleteBucket(bucket);
  });

  /** Takes a Standby snapshot of `instance` and waits until the store holds it (compressed, when asked). */
  async function storedSnapshot(instance: string, compression: Json): Promise<Json> {
    const taken = await fleet.api(`/instances/${instance}/snapshots`, { json: { kind: "Standby", compression } });
    const snapshot: Json = await jsonOf(taken);
    expect(taken.status, JSON.stringify(snapshot)).toBe(201);
    const state = compression.enabled ? "compressed" : "none";
    return waitFor(
      async () => {
        const current = await snapshotOf(snapshot.id);
        return current.storage === "stored" && current.compression_state === state ? current : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250, what: `snapshot ${snapshot.id} stored` },
    );
  }

  /** Waits until the record is marked and every one of `files` is gone (they go one after another). */
  const evicted = (id: string, files: string[]) =>
    waitFor(
      () => (recordOf(id).evicted_at && files.every((name) => !existsSync(path.join(dirOf(id), name)))) || undefined,
      { timeoutMs: 30_000, intervalMs: 100, what: `snapshot ${id}'s payload evicted` },
    );

  it("forks a snapshot whose payload was evicted: pulled back from the store, the guest resumes; a mapped payload stays", async () => {
    const created = await fleet.api("/instances", { json: { name: "evict-src", size: "256MB" } });
    expect(created.status).toBe(201);
    await waitForTick(api, "evict-src", 2);
    const before = await consolePoint(apiConsole(api, "evict-src"));
    const stored = await storedSnapshot("evict-src", { enabled: true, algorithm: "zstd", level: 1 });
    const captured = capturedBetween(before, await consolePoint(apiConsole(api, "evict-src")));

    // Evicted: the image and its sums go, the record stays; readers see the same snapshot.
    await evicted(stored.id, ["disk.raw", "device-state", "memory.raw.sqfs", "memory.raw.sqfs.sums"]);
    expect(existsSync(path.join(dirOf(stored.id), "snapshot.json"))).toBe(true);
    expect(await snapshotOf(stored.id)).toEqual(stored);

    // A fork on the owner pulls the payload back first, and resumes the guest from the snapshot's moment.
    const fork = await fleet.api(`/snapshots/${stored.id}/fork`, { json: { name: "evict-fork" } });
    const body: Json = await jsonOf(fork);
    expect(fork.status, JSON.stringify(body)).toBe(201);
    expect(body).toMatchObject({ host_id: "fleet-a", state: "Running" });
    await waitForResume(apiConsole(api, "evict-fork"), captured);
    expect(fleet.host("fleet-a").capture.output()).toContain("evicted snapshot payload pulled back");
    expect(recordOf(stored.id).evicted_at).toBeUndefined();

    // While the fork maps it, it stays: a snapshot stored later is evicted by the checks that follow, this one is not.
    const later = await storedSnapshot("evict-src", { enabled: false });
    await evicted(later.id, ["disk.raw", "device-state", "memory.raw"]);
    expect(existsSync(path.join(dirOf(stored.id), "memory.raw.sqfs"))).toBe(true);
    expect(recordOf(stored.id).evicted_at).toBeUndefined();
  }, 300_000);
});
