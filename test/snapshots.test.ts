// The snapshots API through the official SDK (@onkernel/hypeman), unchanged, against the whole service on real
// QEMU guests: the contract's flow, its filters, and each of its 400/404/409 cases.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import Hypeman from "@onkernel/hypeman";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForTick as waitForConsoleTick } from "./helpers/console.ts";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { sampleValue } from "./helpers/prometheus.ts";
import { apiConsole, capturedBetween, consolePoint, waitForResume } from "./helpers/resume.ts";
import { isMounted as isMountedIn, runSdkFlow, statusOf } from "./helpers/sdk-flow.ts";
import { type RunningService, startService } from "./helpers/service.ts";

let service: RunningService;
let client: Hypeman;

beforeAll(async () => {
  service = await startService();
  // Retries off: a 409 must reach the test as it was answered.
  client = new Hypeman({ apiKey: service.apiKey(), baseURL: service.baseUrl, maxRetries: 0 });
}, 60_000);

afterAll(async () => {
  await service?.stop("SIGTERM");
  service?.remove();
});

const guestConsole = (name: string) => apiConsole(service.api, name);
const waitForTick = (name: string, atLeast: number) => waitForConsoleTick(service.api, name, atLeast, 60_000);
const isMounted = (snapshotId: string) => isMountedIn(service.dataDir, snapshotId);

describe("the SDK flow", () => {
  it("snapshots a running guest, compresses it, finds it, forks it, and deletes it", async () => {
    await runSdkFlow({
      client,
      api: (pathAndQuery) => service.api(pathAndQuery),
      dataDir: service.dataDir,
    });
  });

  it("compresses with lz4 and restores the source to the snapshot moment", async () => {
    const source = await client.instances.create({ name: "lz4-src", image: "busybox", size: "128MB" });
    await waitForTick("lz4-src", 2);
    const beforeSnapshot = await consolePoint(guestConsole("lz4-src"));
    const snapshot = await client.instances.snapshots.create("lz4-src", {
      kind: "Standby",
      compression: { enabled: true, algorithm: "lz4" },
    });
    expect(snapshot.compression).toEqual({ enabled: true, algorithm: "lz4", level: 0 });
    expect(snapshot.name).toBeNull();
    const afterSnapshot = await consolePoint(guestConsole("lz4-src"));
    await waitFor(
      async () => ((await client.snapshots.get(snapshot.id)).compression_state === "compressed" ? true : undefined),
      {
        timeoutMs: 60_000,
        what: "lz4 compression",
      },
    );
    await waitForTick("lz4-src", afterSnapshot.lastTick + 3);

    const running = await statusOf(client.instances.snapshots.restore(snapshot.id, { id: source.id }));
    expect(running).toMatchObject({ status: 409, code: "invalid_state" });
    await client.instances.standby(source.id);
    const atStandby = await consolePoint(guestConsole("lz4-src"));
    const restored = await client.instances.snapshots.restore(snapshot.id, { id: source.id });
    expect(restored.state).toBe("Running");
    // The count goes back to the snapshot moment: the next ticks printed continue from there, not from later.
    await waitForResume(guestConsole("lz4-src"), capturedBetween(beforeSnapshot, afterSnapshot, atStandby.fromLine));
    expect((await client.snapshots.get(snapshot.id)).compression_state).toBe("compressed");
  });

  it("forks a compressed snapshot whose RAM is in the stream, and refuses one whose image is damaged before any guest runs", async () => {
    // lz4-src was restored from a snapshot: it maps its RAM privately, so its snapshots carry RAM in the stream.
    const beforeSnapshot = await consolePoint(guestConsole("lz4-src"));
    const snapshot = await client.instances.snapshots.create("lz4-src", {
      kind: "Standby",
      compression: { enabled: true, algorithm: "zstd", level: 1 },
    });
    const afterSnapshot = await consolePoint(guestConsole("lz4-src"));
    await waitFor(
      async () => ((await client.snapshots.get(snapshot.id)).compression_state === "compressed" ? true : undefined),
      { timeoutMs: 60_000, what: "compression" },
    );
    await client.snapshots.fork(snapshot.id, { name: "stream-fork" });
    await waitForResume(guestConsole("stream-fork"), capturedBetween(beforeSnapshot, afterSnapshot));
    // The stream was read whole at load: nothing maps the image, which stays mounted for the next fork a while
    // (IMAGE_MOUNT_IDLE_MS), as it does after the fork is deleted.
    expect(isMounted(snapshot.id)).toBe(true);
    await client.instances.delete("stream-fork");
    expect(isMounted(snapshot.id)).toBe(true);

    // Its export carries the image and its checksum list as stored (unsquashfs reads the image), raw files as .sfc;
    // an import verifies the image against the list and keeps it compressed.
    const exported = await service.api(`/snapshots/${snapshot.id}/export`);
    expect(exported.status).toBe(200);
    const work = mkdtempSync(path.join(os.tmpdir(), "snapshot-export-"));
    try {
      const archive = Buffer.from(await exported.arrayBuffer());
      writeFileSync(path.join(work, "snapshot.tar"), archive);
      const entries = execFileSync("tar", ["-tf", "snapshot.tar"], { cwd: work, encoding: "utf8" }).trim().split("\n");
      expect(entries).toEqual([
        "snapshot.json",
        "disk.raw.sfc",
        "device-state.sqfs",
        "device-state.sqfs.sums",
        "manifest.json",
      ]);
      execFileSync("tar", ["-xf", "snapshot.tar", "device-state.sqfs"], { cwd: work });
      expect(execFileSync("unsquashfs", ["-l", "device-state.sqfs"], { cwd: work, encoding: "utf8" })).toContain(
        "squashfs-root/device-state",
      );
      const imported = await fetch(`${service.baseUrl}/snapshots/import`, {
        method: "POST",
        body: archive,
        headers: { authorization: `Bearer ${service.apiKey()}`, "content-type": "application/x-tar" },
      });
      const copy = await jsonOf(imported);
      expect(imported.status, JSON.stringify(copy)).toBe(201);
      expect(copy).toMatchObject({ compression_state: "compressed", kind: "Standby" });
      const stored = readdirSync(path.join(service.dataDir, "snapshots", copy.id));
      expect(stored).toEqual(expect.arrayContaining(["device-state.sqfs", "device-state.sqfs.sums", "disk.raw"]));
      expect(stored).not.toContain("disk.raw.sfc");
    } finally {
      rmSync(work, { recursive: true, force: true });
    }

    const image = path.join(service.dataDir, "snapshots", snapshot.id, "device-state.sqfs");
    const [, [blockOffset, blockLength]] = JSON.parse(readFileSync(`${image}.sums`, "utf8")).pieces;
    const bytes = readFileSync(image);
    bytes[blockOffset + Math.floor(blockLength / 2)]! ^= 0x55;
    writeFileSync(image, bytes); // the kept mount's image changed: the next fork reads it against its checksums again
    const refused = await statusOf(client.snapshots.fork(snapshot.id, { name: "bad-fork" }));
    expect(refused).toMatchObject({ status: 409, code: "invalid_state" });
    expect(refused.message).toMatch(/compressed memory image failed verification .* no guest was started/);
    expect((await statusOf(client.instances.get("bad-fork"))).status).toBe(404);
    expect(isMounted(snapshot.id)).toBe(false);
  });

  it("takes Stopped snapshots (disk only, never compressed) and forks them Stopped or Running", async () => {
    const source = await client.instances.create({
      name: "stopped-src",
      image: "busybox",
      size: "128MB",
      snapshot_policy: { compression: { enabled: true, algorithm: "zstd", level: 5 } },
    });
    await waitForTick("stopped-src", 2);
    await client.instances.stop(source.id);
    const runningCounts = async () => {
      const text = await (await service.api("/metrics")).text();
      const count = (operation: string) =>
        sampleValue(text, "snapfleet_instances_time_to_running_seconds_count", { operation, hypervisor: "qemu" }) ?? 0;
      return { fork: count("fork"), snapshot_restore: count("snapshot_restore") };
    };
    const before = await runningCounts();
    const snapshot = await client.instances.snapshots.create(source.id, { kind: "Stopped", name: "cold" });
    expect(snapshot).toMatchObject({ kind: "Stopped", compression_state: "none", compression: { enabled: false } });
    const stoppedFork = await client.snapshots.fork(snapshot.id, { name: "cold-fork" });
    expect(stoppedFork.state).toBe("Stopped");
    const runningFork = await client.snapshots.fork(snapshot.id, { name: "warm-fork", target_state: "Running" });
    expect(runningFork.state).toBe("Running");
    await waitForTick("warm-fork", 1);
    const restored = await client.instances.snapshots.restore(snapshot.id, { id: source.id, target_state: "Running" });
    expect(restored.state).toBe("Running");
    // One time to Running each for the Running fork and the restore; the Stopped fork never ran.
    const expected = { fork: before.fork + 1, snapshot_restore: before.snapshot_restore + 1 };
    await waitFor(async () => JSON.stringify(await runningCounts()) === JSON.stringify(expected), {
      what: "the fork's and the restore's time to Running in /metrics",
    });
  });

  it("applies the instance policy, and an explicit disable wins", async () => {
    await client.instances.create({
      name: "policy-src",
      image: "busybox",
      size: "128MB",
      snapshot_policy: { compression: { enabled: true, algorithm: "lz4", level: 4 } },
    });
    const inherited = await client.instances.snapshots.create("policy-src", { kind: "Standby" });
    expect(inherited.compression).toEqual({ enabled: true, algorithm: "lz4", level: 4 });
    const disabled = await client.instances.snapshots.create("policy-src", {
      kind: "Standby",
      compression: { enabled: false, algorithm: "zstd", level: 99 },
    });
    expect(disabled.compression).toEqual({ enabled: false });
    expect(disabled.compression_state).toBe("none");
  });

  it("pages through the list with a cursor, keeping the bare array", async () => {
    const all = await client.snapshots.list();
    expect(all.length).toBeGreaterThanOrEqual(3);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const response = await service.api(`/snapshots?limit=2${cursor ? `&cursor=${cursor}` : ""}`);
      const page = await jsonOf(response);
      expect(Array.isArray(page)).toBe(true);
      seen.push(...page.map((item: { id: string }) => item.id));
      cursor = response.headers.get("x-next-cursor");
    } while (cursor);
    expect(seen).toEqual(all.map((item) => item.id));
  });
});

describe("the contract's errors", () => {
  let running: { id: string };
  let standbySnapshot: { id: string };

  beforeAll(async () => {
    running = await client.instances.create({ name: "err-src", image: "busybox", size: "128MB" });
    standbySnapshot = await client.instances.snapshots.create(running.id, { kind: "Standby", name: "taken" });
  });

  it.each([
    [{ kind: "Sideways" }, "kind", "invalid_request"],
    [{ kind: "Standby", name: "Upper" }, "name", "invalid_request"],
    [{ kind: "Standby", name: "-edge" }, "name", "invalid_request"],
    [{ kind: "Standby", name: "a".repeat(64) }, "name", "invalid_request"],
    [{ kind: "Standby", tags: { "": "x" } }, "tags", "invalid_request"],
    [{ kind: "Standby", tags: { ok: "x".repeat(257) } }, "tags", "invalid_request"],
    [
      { kind: "Standby", tags: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, "v"])) },
      "tags",
      "invalid_request",
    ],
    [
      { kind: "Standby", compression: { enabled: true, algorithm: "zstd", level: 0 } },
      "level",
      "invalid_snapshot_compression",
    ],
    [
      { kind: "Standby", compression: { enabled: true, algorithm: "zstd", level: 20 } },
      "level",
      "invalid_snapshot_compression",
    ],
    [
      { kind: "Standby", compression: { enabled: true, algorithm: "lz4", level: 10 } },
      "level",
      "invalid_snapshot_compression",
    ],
    [
      { kind: "Standby", compression: { enabled: true, algorithm: "brotli" } },
      "algorithm",
      "invalid_snapshot_compression",
    ],
    [{ kind: "Stopped", compression: { enabled: true } }, "Stopped", "invalid_request"],
  ])("create %j → 400 mentioning %s, code %s", async (body, mention, code) => {
    const response = await service.api(`/instances/${running.id}/snapshots`, { json: body });
    expect(response.status).toBe(400);
    const error = await jsonOf(response);
    expect(error.code).toBe(code);
    expect(error.message).toContain(mention);
  });

  it("create: 404 unknown instance, 409 duplicate name, 409 wrong source state", async () => {
    expect(await statusOf(client.instances.snapshots.create("no-such-vm", { kind: "Standby" }))).toMatchObject({
      status: 404,
      code: "not_found",
    });
    expect(
      await statusOf(client.instances.snapshots.create(running.id, { kind: "Standby", name: "taken" })),
    ).toMatchObject({ status: 409, code: "name_conflict" });
    expect(await statusOf(client.instances.snapshots.create(running.id, { kind: "Stopped" }))).toMatchObject({
      status: 409,
      code: "invalid_state",
    });
  });

  it("names are unique per source instance even when two creates race", async () => {
    const results = await Promise.allSettled([
      client.instances.snapshots.create(running.id, { kind: "Standby", name: "race" }),
      client.instances.snapshots.create(running.id, { kind: "Standby", name: "race" }),
    ]);
    const statuses = results.map((result) =>
      result.status === "fulfilled" ? 201 : (result.reason as { status: number }).status,
    );
    expect(statuses.sort()).toEqual([201, 409]);
  });

  it("list: 400 on a bad filter; get and delete: 404", async () => {
    expect((await service.api("/snapshots?kind=Paused")).status).toBe(400);
    expect((await service.api("/snapshots?limit=0")).status).toBe(400);
    expect((await service.api("/snapshots?cursor=garbage")).status).toBe(400);
    expect(await statusOf(client.snapshots.get("nosuchsnapshot000000000000"))).toMatchObject({ status: 404 });
    expect(await statusOf(client.snapshots.get("../../etc/passwd"))).toMatchObject({ status: 404 });
    expect(await statusOf(client.snapshots.delete("nosuchsnapshot000000000000"))).toMatchObject({ status: 404 });
  });

  it("fork: 400 bad body or target, 404 unknown snapshot, 409 taken name", async () => {
    expect((await service.api(`/snapshots/${standbySnapshot.id}/fork`, { json: {} })).status).toBe(400);
    expect((await service.api(`/snapshots/${standbySnapshot.id}/fork`, { json: { name: "Bad Name" } })).status).toBe(
      400,
    );
    expect(
      await statusOf(client.snapshots.fork(standbySnapshot.id, { name: "f1", target_hypervisor: "firecracker" })),
    ).toMatchObject({ status: 400, code: "invalid_request" });
    expect(
      (await service.api(`/snapshots/${standbySnapshot.id}/fork`, { json: { name: "f1", target_state: "Paused" } }))
        .status,
    ).toBe(400);
    expect(await statusOf(client.snapshots.fork("nosuchsnapshot000000000000", { name: "f1" }))).toMatchObject({
      status: 404,
    });
    expect(await statusOf(client.snapshots.fork(standbySnapshot.id, { name: "err-src" }))).toMatchObject({
      status: 409,
      code: "name_conflict",
    });
  });

  it("restore: 400 snapshot of another instance or bad target, 404 unknown, 409 source Running", async () => {
    const other = await client.instances.create({ name: "err-other", image: "busybox", size: "128MB" });
    await client.instances.stop(other.id);
    expect(await statusOf(client.instances.snapshots.restore(standbySnapshot.id, { id: other.id }))).toMatchObject({
      status: 400,
      code: "invalid_request",
    });
    expect(
      await statusOf(
        client.instances.snapshots.restore(standbySnapshot.id, { id: running.id, target_hypervisor: "vz" }),
      ),
    ).toMatchObject({ status: 400 });
    expect(
      await statusOf(client.instances.snapshots.restore("nosuchsnapshot000000000000", { id: running.id })),
    ).toMatchObject({ status: 404 });
    expect(await statusOf(client.instances.snapshots.restore(standbySnapshot.id, { id: "no-such-vm" }))).toMatchObject({
      status: 404,
    });
    expect(await statusOf(client.instances.snapshots.restore(standbySnapshot.id, { id: running.id }))).toMatchObject({
      status: 409,
      code: "invalid_state",
    });
    const stoppedTarget = await service.api(`/instances/${running.id}/snapshots/${standbySnapshot.id}/restore`, {
      json: { target_state: "Paused" },
    });
    expect(stoppedTarget.status).toBe(400);
  });
});
