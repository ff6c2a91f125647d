// Crash safety of the snapshot pipeline on real guests (TCG), real Redis and real SQLite through the whole service:
// kill -9 of the compression worker and of the API mid-work, delete and fork racing a compression in flight.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { waitForTick as waitForConsoleTick } from "./helpers/console.ts";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { apiConsole, type CapturePoint, capturedBetween, consolePoint, waitForResume } from "./helpers/resume.ts";
import { isAlive, type RunningService, startService } from "./helpers/service.ts";

let service: RunningService;

/** zstd 19 on a 256 MiB guest's memory takes long enough for a kill, a delete or a fork to land mid-job. */
const SLOW = { enabled: true, algorithm: "zstd", level: 19 } as const;

beforeAll(async () => {
  // A crashed compression worker's job is taken over once its lock lapses: keep that short here.
  service = await startService({ COMPRESSION_JOB_LOCK_MS: "3000" });
  await create("src");
  await waitForTick("src", 1, 90_000);
}, 120_000);

afterAll(async () => {
  if (process.env.CRASH_TEST_LOG) writeFileSync(process.env.CRASH_TEST_LOG, service?.output() ?? "");
  await service?.stop("SIGTERM");
  service?.remove();
});

async function create(name: string) {
  const response = await service.api("/instances", { json: { name, size: "256MB" } });
  expect(response.status, await response.clone().text()).toBe(201);
  return jsonOf(response);
}

const waitForTick = (name: string, atLeast: number, timeoutMs = 60_000) =>
  waitForConsoleTick(service.api, name, atLeast, timeoutMs);
const guestConsole = (name: string) => apiConsole(service.api, name);

/** Snapshots a running guest; returns the snapshot and where it caught the guest's count. */
async function snapshotWithPoint(instance: string): Promise<{ taken: { id: string }; captured: CapturePoint }> {
  const before = await consolePoint(guestConsole(instance));
  const taken = await snapshot(instance);
  return { taken, captured: capturedBetween(before, await consolePoint(guestConsole(instance))) };
}

/** Waits for `ticks` more ticks and checks the guest ran on to them: no boot, no gap. */
async function expectRunsOn(name: string, ticks = 1) {
  await waitForResume(guestConsole(name), await consolePoint(guestConsole(name)), { ticks });
}

async function snapshot(instance: string, compression: object = SLOW) {
  const response = await service.api(`/instances/${instance}/snapshots`, { json: { kind: "Standby", compression } });
  expect(response.status, await response.clone().text()).toBe(201);
  return jsonOf(response);
}

async function getSnapshot(id: string) {
  return jsonOf(await service.api(`/snapshots/${id}`));
}

async function waitForCompression(id: string, state: "compressing" | "compressed", timeoutMs = 150_000, strict = true) {
  return waitFor(
    async () => {
      const current = await getSnapshot(id);
      if (current.compression_state === "error") throw new Error(`compression failed: ${current.compression_error}`);
      if (state === "compressing" && current.compression_state === "compressed") {
        if (!strict) return current;
        throw new Error(`snapshot ${id} compressed before the test could act mid-job`);
      }
      return current.compression_state === state ? current : undefined;
    },
    { timeoutMs, intervalMs: 100, what: `snapshot ${id} to be ${state}` },
  );
}

/** Forks and checks the fork resumes the source's tick count (no reboot). */
async function forkAndCheck(snapshotId: string, name: string, captured: CapturePoint) {
  const response = await service.api(`/snapshots/${snapshotId}/fork`, { json: { name } });
  expect(response.status, await response.clone().text()).toBe(201);
  const fork = await jsonOf(response);
  expect(fork.state).toBe("Running");
  await waitForResume(guestConsole(name), captured);
  return fork;
}

const logRecords = () =>
  service
    .output()
    .split("\n")
    .filter((line) => line.startsWith("{"))
    .map((line) => {
      try {
        return JSON.parse(line) as { name?: string; pid?: number; msg?: string; snapshotId?: string };
      } catch {
        return {};
      }
    });

const startedPids = (name: string, msg: string) =>
  logRecords()
    .filter((record) => record.name === name && record.msg === msg)
    .map((record) => record.pid!);

async function killAndAwaitRestart(name: string, msg: string) {
  const before = startedPids(name, msg);
  const pid = before.at(-1)!;
  expect(isAlive(pid)).toBe(true);
  process.kill(pid, "SIGKILL");
  await waitFor(() => (startedPids(name, msg).length > before.length ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 100,
    what: `${name} to be restarted`,
  });
  return pid;
}

const deleteInstance = async (name: string) =>
  expect((await service.api(`/instances/${name}`, { method: "DELETE" })).status).toBe(204);

const qemuPid = (id: string) => Number(readFileSync(path.join(service.dataDir, "instances", id, "qemu.pid"), "utf8"));

describe("crash safety of the snapshot pipeline", () => {
  it("kill -9 of the compression worker mid-job: the job is taken over, a fork and a restore meeting the retried compression run, and the snapshot ends compressed and forks", async () => {
    await waitForTick("src", 1);
    const { taken, captured } = await snapshotWithPoint("src");
    await waitForCompression(taken.id, "compressing");
    const killed = await killAndAwaitRestart("compression-worker", "compression worker started");
    expect(isAlive(killed)).toBe(false);
    // The restarted worker takes the job over once its lock lapses and starts again from the raw file. Meanwhile
    // the snapshot stays compressing: a fork now maps the raw file.
    expect((await getSnapshot(taken.id)).compression_state).toBe("compressing");
    await forkAndCheck(taken.id, "mid-compress", captured);
    // So does a restore of the source from the same snapshot.
    expect((await service.api("/instances/src/standby", { method: "POST" })).status).toBe(200);
    const atStandby = await consolePoint(guestConsole("src"));
    const restored = await service.api(`/instances/src/snapshots/${taken.id}/restore`, { json: {} });
    expect(restored.status, await restored.clone().text()).toBe(200);
    expect((await jsonOf(restored)).state).toBe("Running");
    // The restored source prints ticks again, counting on from the snapshot's moment.
    await waitForResume(guestConsole("src"), { ...captured, fromLine: atStandby.fromLine });

    const done = await waitForCompression(taken.id, "compressed");
    expect(done.compressed_size_bytes).toBeGreaterThan(0);
    expect(done.uncompressed_size_bytes).toBe(256 * 1024 * 1024);
    expect(done.compressed_size_bytes).toBeLessThan(done.uncompressed_size_bytes);
    // The raw file went once the compressed one was in place, and the killed attempt left no temporary behind.
    const files = readdirSync(path.join(service.dataDir, "snapshots", taken.id));
    expect(files.sort()).toEqual([
      "device-state",
      "device-state.machine.json",
      "disk.raw",
      "memory.raw.sqfs",
      "memory.raw.sqfs.sums",
      "snapshot.json",
    ]);
    // The fork made mid-compression still runs on the raw file it mapped before that file was removed.
    await expectRunsOn("mid-compress");

    // A fork from the compressed snapshot maps the file inside its mounted image and resumes the count.
    await forkAndCheck(taken.id, "after-kill", captured);
    expect(readFileSync("/proc/mounts", "utf8")).toContain(path.join(service.dataDir, "mounts", taken.id));
    await deleteInstance("after-kill");
    await deleteInstance("mid-compress");
    expect((await service.api(`/snapshots/${taken.id}`, { method: "DELETE" })).status).toBe(204);
  }, 240_000);

  it("the read model catches up without duplicates after the API is killed while events flow", async () => {
    const taken = [];
    for (let index = 0; index < 3; index++) taken.push(await snapshot("src", { ...SLOW, level: 12 }));
    // Compressions run one after another, each appending started, progress and completed events.
    await waitForCompression(taken[0].id, "compressing", 60_000, false);
    const onDisk = (id: string) =>
      JSON.parse(readFileSync(path.join(service.dataDir, "snapshots", id, "snapshot.json"), "utf8")).snapshot;
    expect(taken.filter(({ id }) => onDisk(id).compression_state !== "compressed").length).toBeGreaterThan(0);
    await killAndAwaitRestart("api", "listening");
    await waitFor(
      async () =>
        (await fetch(`${service.baseUrl}/health`).catch(() => undefined))?.status === 200 ? true : undefined,
      { timeoutMs: 30_000, what: "the restarted API to be healthy" },
    );
    for (const { id } of taken) await waitForCompression(id, "compressed");

    const listed: Array<{ id: string; compression_state: string }> = await jsonOf(await service.api("/snapshots"));
    for (const { id } of taken) {
      const matches = listed.filter((item) => item.id === id);
      expect(matches).toHaveLength(1);
      // The read model agrees with the host's own record.
      expect(matches[0]).toEqual({ ...onDisk(id), host_online: true }); // host_online: read-time extension
    }
    expect(new Set(listed.map((item) => item.id)).size).toBe(listed.length);

    const db = new Database(path.join(service.dataDir, "snapfleet.db"), { readonly: true, fileMustExist: true });
    try {
      const duplicates = db
        .prepare(
          "SELECT event_id FROM processed_events GROUP BY event_id HAVING COUNT(*) > 1 " +
            "UNION ALL SELECT stream_id FROM processed_events GROUP BY stream_id HAVING COUNT(*) > 1",
        )
        .all();
      expect(duplicates).toEqual([]);
      const rows = db.prepare("SELECT id FROM snapshots").all() as Array<{ id: string }>;
      expect(new Set(rows.map((row) => row.id)).size).toBe(rows.length);
    } finally {
      db.close();
    }
    for (const { id } of taken) expect((await service.api(`/snapshots/${id}`, { method: "DELETE" })).status).toBe(204);
  }, 180_000);

  it("deleting a snapshot while it compresses removes it and its payload; an earlier fork keeps running", async () => {
    await waitForTick("src", 1);
    const { taken, captured } = await snapshotWithPoint("src");
    await waitForCompression(taken.id, "compressing");
    const fork = await forkAndCheck(taken.id, "before-delete", captured);

    expect((await service.api(`/snapshots/${taken.id}`, { method: "DELETE" })).status).toBe(204);
    expect((await service.api(`/snapshots/${taken.id}`)).status).toBe(404);
    expect(existsSync(path.join(service.dataDir, "snapshots", taken.id))).toBe(false);
    expect(existsSync(path.join(service.dataDir, "cache", taken.id))).toBe(false);

    // The compression notices and stops; nothing comes back on disk, and the fork runs on.
    const pid = qemuPid(fork.id);
    await expectRunsOn("before-delete", 2);
    expect(isAlive(pid)).toBe(true);
    expect((await jsonOf(await service.api("/instances/before-delete"))).state).toBe("Running");
    await waitFor(
      () =>
        logRecords().some(
          (record) => record.snapshotId === taken.id && record.msg === "snapshot deleted during compression: stopped",
        ) || undefined,
      { timeoutMs: 30_000, what: "the compression to stop" },
    );
    expect(existsSync(path.join(service.dataDir, "snapshots", taken.id))).toBe(false);
    expect(existsSync(path.join(service.dataDir, "cache", taken.id))).toBe(false);
    await deleteInstance("before-delete");
  }, 120_000);
});
