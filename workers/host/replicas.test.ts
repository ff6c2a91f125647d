// Replica reconcile against real parts: copies written to a host's store, owners' payload servers with real
// tombstone files, the host directory and replica sets in the test Redis. No guest: the copies are records only.
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, open, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { filesInUseUnder } from "../../shared/cache-budget.ts";
import { EventStream } from "../../shared/events/stream.ts";
import { hostPayloadKey } from "../../shared/fleet-secret.ts";
import { nextStamp, TombstoneStore } from "../../shared/host-records.ts";
import { announceHost, renewHostLease } from "../../shared/hosts.ts";
import { createLogger } from "../../shared/logger.ts";
import { PayloadClient } from "../../shared/payload-client.ts";
import { closeRedis } from "../../shared/redis.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import { replicaSetKey } from "../../shared/snapshots/replicas.ts";
import { SnapshotStore } from "../../shared/snapshots/store.ts";
import { freePort, tempDir, testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { forgetPrefix } from "../../test/helpers/redis-loss.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import { type PayloadServer, startPayloadServer } from "./payload-server.ts";
import { type ReplicaDeps, Replicas } from "./replicas.ts";

const SECRET = "replicas-test-secret";
const HOST = "host-b";

describe("Replicas.reconcile", () => {
  const prefix = uniquePrefix("replicas");
  const redis = new Redis(testRedisUrl());
  const dirs = { host: tempDir("replicas-host"), owner: tempDir("replicas-owner") };
  const store = new SnapshotStore(dirs.host.dir, redis, prefix);
  const ownerTombstones = new TombstoneStore(dirs.owner.dir);
  /** This host's replicas, with `cache` when a test bounds them. */
  const replicasWith = (cache?: ReplicaDeps["cache"]) =>
    new Replicas({
      hostId: HOST,
      store,
      redis,
      prefix,
      events: new EventStream(redis, prefix),
      payloads: new PayloadClient({ secret: SECRET }),
      cache,
      log: createLogger("replicas-test", "silent"),
    });
  const replicas = replicasWith();
  let owner: PayloadServer;

  beforeAll(async () => {
    owner = await startPayloadServer({
      store: new SnapshotStore(dirs.owner.dir, redis, prefix),
      tombstones: ownerTombstones,
      key: hostPayloadKey(SECRET, "host-a"),
      port: 0,
      host: "127.0.0.1",
      timeouts: { idleMs: 10_000, headersMs: 10_000 },
      log: createLogger("replicas-test-owner", "silent"),
      importArchive: async () => ({}),
    });
    await online("host-a", `http://127.0.0.1:${owner.port}`);
    // Online, but nothing listens at its payload URL: every question to it fails.
    await online("host-mute", `http://127.0.0.1:${await freePort()}`);
  });

  afterAll(async () => {
    await owner?.close();
    await forgetPrefix(redis, prefix);
    await closeRedis(redis);
    dirs.host.remove();
    dirs.owner.remove();
  });

  async function online(hostId: string, payloadUrl: string) {
    const now = new Date().toISOString();
    await announceHost(redis, prefix, {
      id: hostId,
      hypervisors: ["qemu"],
      started_at: now,
      last_seen_at: now,
      pid: process.pid,
      payload_url: payloadUrl,
    });
    await renewHostLease(redis, prefix, hostId, 600_000);
  }

  /** A copy on this host of a snapshot of `ownerHostId`, as a pull installs it (a record is enough here). */
  async function copyOf(ownerHostId: string): Promise<Snapshot> {
    const source = sampleInstance({ host_id: ownerHostId });
    const snapshot = sampleSnapshot(source, { kind: "Stopped" });
    await mkdir(store.dir(snapshot.id), { recursive: true });
    await store.write({
      snapshot,
      source,
      memory_layout: "none",
      memory_payload: null,
      version: 1,
      last_event: null,
      replica_of: ownerHostId,
    });
    return snapshot;
  }

  async function deleteOnOwner(snapshot: Snapshot) {
    await ownerTombstones.write({
      kind: "snapshot",
      ...nextStamp(undefined, "snapshot.deleted", null),
      deleted_at: new Date().toISOString(),
      snapshot,
    });
  }

  const replicaSet = (snapshot: Snapshot) => redis.smembers(replicaSetKey(prefix, snapshot.id));

  it("tells Redis again of every copy on this disk after Redis lost the sets", async () => {
    const [live, offlineOwner, muteOwner] = [
      await copyOf("host-a"),
      await copyOf("host-gone"),
      await copyOf("host-mute"),
    ];
    const result = await replicas.reconcile();
    expect(result.registered.sort()).toEqual([live.id, offlineOwner.id, muteOwner.id].sort());
    expect(result.dropped).toEqual([]);
    for (const snapshot of [live, offlineOwner, muteOwner]) {
      expect(await replicaSet(snapshot)).toEqual([HOST]);
      expect(existsSync(store.dir(snapshot.id))).toBe(true);
    }
  });

  it("drops a copy whose owner holds the original's tombstone, and only that one", async () => {
    const deleted = await copyOf("host-a");
    const kept = await copyOf("host-a");
    await deleteOnOwner(deleted);
    const result = await replicas.reconcile();
    expect(result.dropped).toEqual([deleted.id]);
    expect(existsSync(store.dir(deleted.id))).toBe(false);
    expect(await replicaSet(deleted)).toEqual([]);
    expect(existsSync(store.dir(kept.id))).toBe(true);
    expect(await replicaSet(kept)).toEqual([HOST]);
  });

  it("shares one run between calls made while it runs", async () => {
    const [first, second] = [replicas.reconcile(), replicas.reconcile()];
    expect(second).toBe(first);
    await first;
  });

  it("answers unavailable, never an internal error, when the owner's payload server does not answer", async () => {
    const source = sampleInstance({ host_id: "host-mute" });
    const snapshot = sampleSnapshot(source, { kind: "Stopped" });
    const pulled = replicas.ensure(snapshot.id, "host-mute");
    await expect(pulled).rejects.toMatchObject({ name: "ApiError", code: "unavailable" });
    await expect(pulled).rejects.toThrow(/host-mute did not answer/);
    expect(existsSync(store.dir(snapshot.id))).toBe(false);
  });

  it("evicts copies beyond PAYLOAD_CACHE_BYTES least recently forked first, never one in use or just forked", async () => {
    const MiB = 1024 ** 2;
    const [oldest, inUse, older, recent] = [
      await copyOf("host-a"),
      await copyOf("host-a"),
      await copyOf("host-a"),
      await copyOf("host-a"),
    ];
    const now = Date.now();
    const ages = new Map([
      [oldest.id, 3_600_000],
      [inUse.id, 3_000_000],
      [older.id, 1_800_000],
      [recent.id, 1_000],
    ]);
    for (const [id, ageMs] of ages) {
      await writeFile(path.join(store.dir(id), "disk.raw"), randomBytes(MiB)); // allocated, not a hole
      const at = new Date(now - ageMs);
      await utimes(store.dir(id), at, at);
    }
    // A VM maps the second oldest copy's payload: this process holds it open, as QEMU would.
    const held = await open(path.join(store.dir(inUse.id), "disk.raw"), "r");
    const mapped = new Set<string>();
    const budgeted = replicasWith({
      budgetBytes: 2.5 * MiB,
      inUse: async (id) => {
        const inUseNow = (await filesInUseUnder(store.dir(id))).size > 0;
        if (inUseNow) mapped.add(id);
        return inUseNow;
      },
    });
    try {
      // Four copies of 1 MiB each (plus the other tests' records) against 2.5 MiB: the oldest goes, the one held is
      // skipped, then the next oldest goes; the one forked a second ago stays whatever the budget says.
      const report = await budgeted.enforceBudget(now);
      expect(report.evicted).toEqual([oldest.id, older.id]);
      expect(mapped).toEqual(new Set([inUse.id]));
      expect(existsSync(store.dir(oldest.id))).toBe(false);
      expect(existsSync(store.dir(older.id))).toBe(false);
      expect(await replicaSet(oldest)).toEqual([]);
      for (const kept of [inUse, recent]) expect(existsSync(store.dir(kept.id))).toBe(true);
    } finally {
      await held.close();
    }
  });
});
