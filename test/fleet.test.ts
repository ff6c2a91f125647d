// Three worker hosts on one machine (test/helpers/fleet.ts): placement, choosing a host, a host that goes away and
// comes back. Two guests boot in this file; everything else forks or reads.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newId } from "../shared/ids.ts";
import { replicaSetKey } from "../shared/snapshots/replicas.ts";
import { archiveOf, entriesOf } from "./helpers/archives.ts";
import { waitForTick } from "./helpers/console.ts";
import { jsonOf, tempDir, testRedisUrl, waitFor } from "./helpers/fixtures.ts";
import { type Fleet, startFleet } from "./helpers/fleet.ts";
import { forgetPrefix } from "./helpers/redis-loss.ts";
import { apiConsole, type CapturePoint, capturedBetween, consolePoint, waitForResume } from "./helpers/resume.ts";

// biome-ignore lint/suspicious/noExplicitAny: a record read back from an archive, edited loosely
type Json = any;

let fleet: Fleet;
const work = tempDir("fleet-work");
const api = (pathAndQuery: string) => fleet.api(pathAndQuery);
const guestConsole = (name: string) => apiConsole(api, name);

beforeAll(async () => {
  fleet = await startFleet(3);
}, 300_000);

afterAll(async () => {
  await fleet?.stop();
  work.remove();
});

async function post(pathAndQuery: string, json: unknown) {
  const response = await fleet.api(pathAndQuery, { json });
  return { status: response.status, body: await jsonOf(response) };
}

async function hostsById(): Promise<Record<string, { online: boolean; offline_reason: string | null }>> {
  const hosts: Array<{ id: string; online: boolean; offline_reason: string | null }> = await jsonOf(
    await api("/hosts"),
  );
  return Object.fromEntries(hosts.map((host) => [host.id, host]));
}

const ids = (resources: Array<{ id: string }>) => resources.map((resource) => resource.id).sort();

async function redisCall<T>(call: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(testRedisUrl());
  try {
    return await call(redis);
  } finally {
    redis.disconnect();
  }
}

async function payloadUrl(hostId: string): Promise<string> {
  const hosts: Array<{ id: string; payload_url: string }> = await jsonOf(await api("/hosts"));
  return hosts.find((host) => host.id === hostId)!.payload_url;
}

/** POSTs a snapshot archive to /snapshots/import; `query` picks the host. */
const importArchive = (archive: Buffer, query = "") =>
  fleet.api(`/snapshots/import${query}`, {
    method: "POST",
    body: archive,
    headers: { "content-type": "application/x-tar" },
  });

/** Rewrites an archive's snapshot.json with `edit` and its manifest to match. */
async function rewriteRecord(archive: Buffer, edit: (record: Json) => void): Promise<Buffer> {
  const entries = await entriesOf(archive);
  const record = JSON.parse(entries[0]!.data.toString());
  edit(record);
  entries[0]!.data = Buffer.from(JSON.stringify(record));
  return archiveOf(entries);
}

describe("a fleet of three hosts", () => {
  // Shared by the steps below, in order.
  let pinned: { id: string; name: string; host_id: string };
  let snapshotId: string;
  /** Where the first snapshot of `pinned` caught it: every fork of it resumes from there. */
  let captured: CapturePoint;
  /** `pinned`'s console just before its host's capture worker is killed. */
  let beforeOutage: CapturePoint;

  it("lists every host online", async () => {
    const hosts = await hostsById();
    expect(Object.keys(hosts).sort()).toEqual(["fleet-a", "fleet-b", "fleet-c"]);
    for (const host of Object.values(hosts)) expect(host).toMatchObject({ online: true, offline_reason: null });
  });

  it("refuses an unknown host_id with 400 and names the known ones", async () => {
    const created = await post("/instances", { name: "nowhere", host_id: "fleet-z" });
    expect(created.status).toBe(400);
    expect(created.body).toMatchObject({ code: "invalid_request" });
    expect(created.body.message).toContain("fleet-a, fleet-b, fleet-c");
    const invalid = await post("/instances", { name: "nowhere", host_id: "Not A Host" });
    expect(invalid.status).toBe(400);
  });

  it("creates on the host asked for, then places on the least loaded host", async () => {
    const first = await post("/instances", { name: "pinned", size: "256MB", host_id: "fleet-c" });
    expect(first.status, JSON.stringify(first.body)).toBe(201);
    expect(first.body).toMatchObject({ host_id: "fleet-c", state: "Running", host_online: true });
    pinned = first.body;
    // fleet-c holds one instance now; a and b none, and ties go to the lowest id.
    const second = await post("/instances", { name: "placed", size: "256MB" });
    expect(second.status, JSON.stringify(second.body)).toBe(201);
    expect(second.body.host_id).toBe("fleet-a");
  }, 300_000);

  it("forks a snapshot on the host that stores it", async () => {
    await waitForTick(api, pinned.name, 2);
    const before = await consolePoint(guestConsole(pinned.name));
    const snapshot = await post(`/instances/${pinned.name}/snapshots`, { kind: "Standby" });
    expect(snapshot.status, JSON.stringify(snapshot.body)).toBe(201);
    expect(snapshot.body).toMatchObject({ host_id: "fleet-c", host_online: true });
    snapshotId = snapshot.body.id;
    captured = capturedBetween(before, await consolePoint(guestConsole(pinned.name)));

    const fork = await post(`/snapshots/${snapshotId}/fork`, { name: "pinned-fork" });
    expect(fork.status, JSON.stringify(fork.body)).toBe(201);
    expect(fork.body).toMatchObject({ host_id: "fleet-c", state: "Running" });
    await waitForResume(guestConsole("pinned-fork"), captured);

    expect((await post(`/snapshots/${snapshotId}/fork`, { name: "elsewhere", host_id: "fleet-z" })).status).toBe(400);
  }, 300_000);

  it("forks on another host: it pulls the payload once for concurrent forks, keeps it, and the forks resume", async () => {
    const [first, second] = await Promise.all(
      ["moved-1", "moved-2"].map((name) => post(`/snapshots/${snapshotId}/fork`, { name, host_id: "fleet-b" })),
    );
    for (const fork of [first!, second!]) {
      expect(fork.status, JSON.stringify(fork.body)).toBe(201);
      expect(fork.body).toMatchObject({ host_id: "fleet-b", state: "Running" });
    }
    for (const name of ["moved-1", "moved-2"]) await waitForResume(guestConsole(name), captured);
    const pulls = fleet
      .host("fleet-b")
      .capture.output()
      .split("\n")
      .filter((line) => line.includes("replica pulled"));
    expect(pulls).toHaveLength(1);
    expect(JSON.parse(pulls[0]!).pulledBytes).toBeGreaterThan(0);
    expect(await redisCall((redis) => redis.smembers(replicaSetKey(fleet.prefix, snapshotId)))).toEqual(["fleet-b"]);
    // The snapshot itself stays where it was.
    expect(await jsonOf(await api(`/snapshots/${snapshotId}`))).toMatchObject({ host_id: "fleet-c" });
  }, 300_000);

  it("forks a compressed snapshot on another host: its image and sums are pulled, verified and mounted there", async () => {
    const before = await consolePoint(guestConsole(pinned.name));
    const snapshot = await post(`/instances/${pinned.name}/snapshots`, {
      kind: "Standby",
      compression: { enabled: true, algorithm: "zstd", level: 1 },
    });
    expect(snapshot.status, JSON.stringify(snapshot.body)).toBe(201);
    const id: string = snapshot.body.id;
    const after = await consolePoint(guestConsole(pinned.name));
    await waitFor(
      async () => ((await jsonOf(await api(`/snapshots/${id}`))).compression_state === "compressed" ? true : undefined),
      { timeoutMs: 120_000, what: "compression" },
    );
    const fork = await post(`/snapshots/${id}/fork`, { name: "compressed-moved", host_id: "fleet-b" });
    expect(fork.status, JSON.stringify(fork.body)).toBe(201);
    expect(fork.body).toMatchObject({ host_id: "fleet-b", state: "Running" });
    await waitForResume(guestConsole("compressed-moved"), capturedBetween(before, after));
    const replicaDir = path.join(fleet.host("fleet-b").dataDir, "snapshots", id);
    expect(readdirSync(replicaDir)).toEqual(expect.arrayContaining(["memory.raw.sqfs", "memory.raw.sqfs.sums"]));
    expect(existsSync(path.join(replicaDir, "memory.raw"))).toBe(false);
    const mounts = readFileSync("/proc/mounts", "utf8");
    expect(mounts).toContain(` ${path.join(fleet.host("fleet-b").dataDir, "mounts", id)} `);

    expect((await fleet.api("/instances/compressed-moved", { method: "DELETE" })).status).toBe(204);
    expect((await fleet.api(`/snapshots/${id}`, { method: "DELETE" })).status).toBe(204);
    expect(existsSync(replicaDir)).toBe(false);
  }, 300_000);

  it("resumes a pull that was cut off: only the missing bytes are fetched", async () => {
    // What an interrupted pull leaves on fleet-a: the owner's listing and the first half of every file.
    const owner = await fleet.payloadTarget("fleet-c");
    const listing = await jsonOf(await fleet.payloads.request(owner, `/snapshots/${snapshotId}/export`));
    const staging = path.join(fleet.host("fleet-a").dataDir, "snapshots", `.pull-${snapshotId}`);
    mkdirSync(staging, { recursive: true });
    writeFileSync(path.join(staging, "listing.json"), JSON.stringify(listing));
    let missing = 0;
    for (const file of listing.files as Array<{ name: string; size: number }>) {
      const half = Math.floor(file.size / 2);
      missing += file.size - half;
      const response = await fleet.payloads.request(owner, `/snapshots/${snapshotId}/files/${file.name}`, {
        headers: { range: `bytes=0-${half - 1}` },
      });
      writeFileSync(path.join(staging, file.name), Buffer.from(await response.arrayBuffer()));
    }
    const fork = await post(`/snapshots/${snapshotId}/fork`, {
      name: "resumed",
      host_id: "fleet-a",
      target_state: "Stopped",
    });
    expect(fork.status, JSON.stringify(fork.body)).toBe(201);
    const pull = fleet
      .host("fleet-a")
      .capture.output()
      .split("\n")
      .find((line) => line.includes("replica pulled"));
    expect(JSON.parse(pull!).pulledBytes).toBe(missing);
  }, 300_000);

  it("a host that goes away: work for it fails at once with 503, its resources stay listed and say so", async () => {
    const instancesBefore = ids(await jsonOf(await api("/instances")));
    beforeOutage = await consolePoint(guestConsole(pinned.name));
    fleet.host("fleet-c").capture.child.kill("SIGKILL");
    await fleet.host("fleet-c").capture.exited;

    const offline = await waitFor(async () => {
      const host = (await hostsById())["fleet-c"]!;
      return host.online ? undefined : host;
    });
    expect(offline.offline_reason).toContain("not connected");

    for (const [path, body] of [
      [`/instances/${pinned.name}/stop`, undefined],
      [`/instances/${pinned.name}/snapshots`, { kind: "Standby" }],
      [`/snapshots/${snapshotId}/fork`, { name: "while-offline" }],
      ["/instances", { name: "on-c", host_id: "fleet-c" }],
    ] as const) {
      const response = await fleet.api(path, { method: "POST", json: body });
      expect(response.status, path).toBe(503);
      expect(await jsonOf(response)).toMatchObject({
        code: "unavailable",
        message: expect.stringContaining("fleet-c"),
      });
    }

    const instances: Array<{
      id: string;
      name: string;
      state: string;
      state_error: string | null;
      host_online: boolean;
    }> = await jsonOf(await api("/instances"));
    expect(ids(instances)).toEqual(instancesBefore);
    for (const instance of instances) {
      if (["pinned", "pinned-fork"].includes(instance.name)) {
        expect(instance).toMatchObject({ state: "Unknown", host_online: false });
        expect(instance.state_error).toContain("host fleet-c is offline");
      } else {
        expect(instance).toMatchObject({ host_online: true, state_error: null });
        expect(instance.state).not.toBe("Unknown");
      }
    }
    const snapshot = await jsonOf(await api(`/snapshots/${snapshotId}`));
    expect(snapshot).toMatchObject({ host_id: "fleet-c", host_online: false });
    expect(ids(await jsonOf(await api("/snapshots")))).toEqual([snapshotId]);
  });

  it("the host coming back: its guests run on, nothing is duplicated", async () => {
    const instancesBefore = ids(await jsonOf(await api("/instances")));
    await fleet.host("fleet-c").restartCapture();
    await waitFor(async () => ((await hostsById())["fleet-c"]!.online ? true : undefined));

    const instance = await jsonOf(await api(`/instances/${pinned.name}`));
    expect(instance).toMatchObject({ state: "Running", state_error: null, host_online: true });
    // It ticks on now, and ran on through the outage: no boot, no gap since before the worker was killed.
    const pinnedConsole = guestConsole(pinned.name);
    await waitForResume(pinnedConsole, await consolePoint(pinnedConsole), { ticks: 1 });
    await waitForResume(pinnedConsole, beforeOutage);
    expect(ids(await jsonOf(await api("/instances")))).toEqual(instancesBefore);
    expect(ids(await jsonOf(await api("/snapshots")))).toEqual([snapshotId]);
    expect(await jsonOf(await api(`/snapshots/${snapshotId}`))).toMatchObject({ host_online: true });
    // Work for it goes through again.
    const fork = await post(`/snapshots/${snapshotId}/fork`, { name: "after-return" });
    expect(fork.status, JSON.stringify(fork.body)).toBe(201);
  }, 300_000);

  it("exports a snapshot from one host and imports it on another, where its fork resumes", async () => {
    const exported = await api(`/snapshots/${snapshotId}/export`);
    expect(exported.status).toBe(200);
    expect(exported.headers.get("content-type")).toBe("application/x-tar");
    const archive = Buffer.from(await exported.arrayBuffer());
    writeFileSync(path.join(work.dir, "snapshot.tar"), archive);
    const entries = execFileSync("tar", ["-tf", "snapshot.tar"], { cwd: work.dir, encoding: "utf8" })
      .trim()
      .split("\n");
    expect(entries).toEqual(["snapshot.json", "disk.raw.sfc", "device-state.sfc", "memory.raw.sfc", "manifest.json"]);
    // The memory payload is plain zstd to the zstd command.
    execFileSync("tar", ["-xf", "snapshot.tar", "memory.raw.sfc"], { cwd: work.dir });
    expect(() => execFileSync("zstd", ["-q", "-t", "memory.raw.sfc"], { cwd: work.dir })).not.toThrow();

    // The host's payload server answers only with its token, and serves ranges.
    const filePath = `/snapshots/${snapshotId}/files/memory.raw.sfc`;
    const fileUrl = `${await payloadUrl("fleet-c")}${filePath}`;
    expect((await fetch(fileUrl)).status).toBe(401);
    expect((await fetch(fileUrl, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    const ranged = await fleet.payloads.request(await fleet.payloadTarget("fleet-c"), filePath, {
      headers: { range: "bytes=0-3" },
    });
    expect(ranged.status).toBe(206);
    expect(Buffer.from(await ranged.arrayBuffer()).readUInt32LE(0)).toBe(0xfd2fb528); // a zstd frame's magic

    const imported = await importArchive(archive, "?host_id=fleet-a");
    const snapshot = await jsonOf(imported);
    expect(imported.status, JSON.stringify(snapshot)).toBe(201);
    expect(snapshot).toMatchObject({ host_id: "fleet-a", kind: "Standby", host_online: true, name: null });
    expect(snapshot.id).not.toBe(snapshotId);
    expect(await jsonOf(await api(`/snapshots/${snapshot.id}`))).toMatchObject({ id: snapshot.id, host_id: "fleet-a" });

    const fork = await post(`/snapshots/${snapshot.id}/fork`, { name: "imported-fork" });
    expect(fork.status, JSON.stringify(fork.body)).toBe(201);
    expect(fork.body).toMatchObject({ host_id: "fleet-a", state: "Running" });
    await waitForResume(guestConsole("imported-fork"), captured);
  }, 300_000);

  it("imports a snapshot whose source instance this service never saw, and forks it", async () => {
    // As if exported by another deployment: a source instance id unknown here, the manifest rewritten to match.
    const foreign = await rewriteRecord(readFileSync(path.join(work.dir, "snapshot.tar")), (record) => {
      record.source.id = newId();
      record.snapshot.source_instance_id = record.source.id;
    });
    const imported = await importArchive(foreign);
    const snapshot = await jsonOf(imported);
    expect(imported.status, JSON.stringify(snapshot)).toBe(201);
    const fork = await post(`/snapshots/${snapshot.id}/fork`, { name: "foreign-fork", target_state: "Stopped" });
    expect(fork.status, JSON.stringify(fork.body)).toBe(201);
    expect(fork.body).toMatchObject({ host_id: snapshot.host_id, state: "Stopped", size: "256MB" });
  }, 300_000);

  it("refuses a truncated or a damaged archive with 400 and keeps nothing of it", async () => {
    const archive = readFileSync(path.join(work.dir, "snapshot.tar"));
    const snapshotsBefore = ids(await jsonOf(await api("/snapshots")));
    const stored = () => readdirSync(path.join(fleet.host("fleet-b").dataDir, "snapshots")).sort();
    const storedBefore = stored();
    const upload = (body: Buffer) => importArchive(body, "?host_id=fleet-b");

    const truncated = await upload(archive.subarray(0, Math.floor(archive.length / 2)));
    expect(truncated.status).toBe(400);
    expect((await jsonOf(truncated)).message).toMatch(/truncated/);

    // One bit flipped inside the memory payload's data: its sha256 no longer matches the manifest.
    const offset = archive.indexOf(Buffer.from("memory.raw.sfc")) + 512 + 4096;
    const flipped = Buffer.from(archive);
    flipped[offset] = flipped[offset]! ^ 0x10;
    const damaged = await upload(flipped);
    expect(damaged.status).toBe(400);
    expect((await jsonOf(damaged)).message).toContain("memory.raw.sfc is damaged");

    const garbage = await upload(Buffer.from("not a tar archive at all"));
    expect(garbage.status).toBe(400);

    expect(ids(await jsonOf(await api("/snapshots")))).toEqual(snapshotsBefore);
    expect(stored()).toEqual(storedBefore);
  });

  it("deleting a snapshot deletes its replicas on every host", async () => {
    const copies = ["fleet-a", "fleet-b"].map((id) => path.join(fleet.host(id).dataDir, "snapshots", snapshotId));
    for (const copy of copies) expect(existsSync(copy)).toBe(true);
    expect((await fleet.api(`/snapshots/${snapshotId}`, { method: "DELETE" })).status).toBe(204);
    for (const copy of copies) expect(existsSync(copy)).toBe(false);
    expect(existsSync(path.join(fleet.host("fleet-c").dataDir, "snapshots", snapshotId))).toBe(false);
    expect(await redisCall((redis) => redis.smembers(replicaSetKey(fleet.prefix, snapshotId)))).toEqual([]);
    // Forks running from a replica keep running.
    expect((await jsonOf(await api("/instances/moved-1"))).state).toBe("Running");
  });

  it("after Redis loses its data, a deleted snapshot's replica is dropped and a kept one is known again", async () => {
    // Two disk-only snapshots on fleet-a (of the Stopped `resumed`), each copied to fleet-b by a Stopped fork.
    const copied: string[] = [];
    for (const name of ["lost-set-deleted", "lost-set-kept"]) {
      const snapshot = await post("/instances/resumed/snapshots", { kind: "Stopped", name });
      expect(snapshot.status, JSON.stringify(snapshot.body)).toBe(201);
      const fork = await post(`/snapshots/${snapshot.body.id}/fork`, {
        name: `${name}-fork`,
        host_id: "fleet-b",
        target_state: "Stopped",
      });
      expect(fork.status, JSON.stringify(fork.body)).toBe(201);
      copied.push(snapshot.body.id);
    }
    const [deletedId, keptId] = copied as [string, string];
    const copy = (id: string) => path.join(fleet.host("fleet-b").dataDir, "snapshots", id);
    const replicaSet = (id: string) => redisCall((redis) => redis.smembers(replicaSetKey(fleet.prefix, id)));
    expect(await replicaSet(keptId)).toEqual(["fleet-b"]);

    // fleet-b is away while Redis loses everything and one snapshot is deleted: no one can tell it to drop its copy.
    await fleet.host("fleet-b").capture.stop("SIGTERM");
    await redisCall((redis) => forgetPrefix(redis, fleet.prefix));
    await waitFor(async () => ((await hostsById())["fleet-a"]?.online ? true : undefined), {
      what: "fleet-a back in the host directory",
    });
    expect((await fleet.api(`/snapshots/${deletedId}`, { method: "DELETE" })).status).toBe(204);
    expect(existsSync(copy(deletedId))).toBe(true);

    // Back, it learns from fleet-a's tombstone that the original is gone, and tells Redis of the copy it keeps.
    await fleet.host("fleet-b").restartCapture();
    await waitFor(() => !existsSync(copy(deletedId)), {
      timeoutMs: 20_000,
      what: "fleet-b to drop its copy of the deleted snapshot",
    });
    await waitFor(async () => ((await replicaSet(keptId)).includes("fleet-b") ? true : undefined), {
      what: "fleet-b in the kept snapshot's replica set again",
    });
    expect(existsSync(copy(keptId))).toBe(true);
    // The rebuilt set is what the delete path reads: deleting the kept snapshot drops fleet-b's copy at once.
    expect((await fleet.api(`/snapshots/${keptId}`, { method: "DELETE" })).status).toBe(204);
    expect(existsSync(copy(keptId))).toBe(false);
  }, 180_000);
});
