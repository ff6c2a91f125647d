// The rest of the Hypeman snapshot surface through the official SDK, unchanged, against the whole service on one
// real QEMU guest: capabilities, fork of an instance (from Running, Stopped), and wait.

import { existsSync, statSync } from "node:fs";
import path from "node:path";
import Hypeman from "@onkernel/hypeman";
import { Queue } from "bullmq";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dueAt, SCHEDULE_QUEUE, schedulerId } from "../api/schedules/scheduler.ts";
import { queuePrefix } from "../shared/jobs/catalog.ts";
import { waitForTick as waitForConsoleTick } from "./helpers/console.ts";
import { testRedisUrl, uniquePrefix, waitFor } from "./helpers/fixtures.ts";
import { apiConsole, capturedBetween, consolePoint, waitForResume } from "./helpers/resume.ts";
import { type RunningService, startService } from "./helpers/service.ts";

const redisUrl = testRedisUrl();
const prefix = uniquePrefix("surface");
let service: RunningService;
let client: Hypeman;
/** Every service started here (the schedule test restarts it on the same data dir): all removed at the end. */
const started: RunningService[] = [];
const waitForTick = (name: string, atLeast: number) => waitForConsoleTick(service.api, name, atLeast, 60_000);
const guestConsole = (name: string) => apiConsole((pathAndQuery) => service.api(pathAndQuery), name);

beforeAll(async () => {
  // The test's own Redis: the schedule test promotes the scheduler's delayed job instead of waiting a minute.
  await startSurfaceService();
  await client.instances.create({ name: "surf-src", image: "busybox", size: "256MB" });
  await waitForTick("surf-src", 1);
}, 120_000);

async function startSurfaceService(dataDir?: string) {
  service = await startService({
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    ...(dataDir ? { DATA_DIR: dataDir } : {}),
  });
  started.push(service);
  client = new Hypeman({ apiKey: service.apiKey(), baseURL: service.baseUrl, maxRetries: 0 });
}

afterAll(async () => {
  await service?.stop("SIGTERM");
  for (const each of started) each.remove();
});

async function failure(call: Promise<unknown>): Promise<{ status: number; code: string }> {
  const caught = (await call.then(
    () => undefined,
    (reason: unknown) => reason,
  )) as { status?: number; error?: { code: string } } | undefined;
  expect(caught, "the call should have failed").toBeDefined();
  return { status: caught!.status!, code: caught!.error!.code };
}

describe("capabilities", () => {
  it("reports qemu available on the online host", async () => {
    const capabilities = await client.capabilities.get();
    expect(capabilities.default_runtime).toEqual({ name: "qemu", available: true });
    expect(capabilities.runtimes.find((runtime) => runtime.name === "qemu")?.features).toEqual(
      expect.arrayContaining(["snapshots", "standby", "fork"]),
    );
  });
});

describe("fork an instance", () => {
  it("refuses a Running source without from_running", async () => {
    expect(await failure(client.instances.fork("surf-src", { name: "surf-refused" }))).toEqual({
      status: 409,
      code: "invalid_state",
    });
  });

  it("forks a Running source that keeps ticking, and the fork runs on from the same moment", async () => {
    await waitForTick("surf-src", 2);
    const before = await consolePoint(guestConsole("surf-src"));
    const fork = await client.instances.fork("surf-src", { name: "surf-fork", from_running: true });
    expect(fork).toMatchObject({ name: "surf-fork", state: "Running", size: "256MB", host_online: true });
    const after = await consolePoint(guestConsole("surf-src"));
    expect((await client.instances.get("surf-src")).state).toBe("Running");
    // The source ran on through the capture (paused, never rebooted); the fork's new console goes on from it.
    await waitForResume(guestConsole("surf-src"), before, { ticks: 3 });
    await waitForResume(guestConsole("surf-fork"), capturedBetween(before, after));
    // The transient snapshot is gone once the fork is up.
    expect(await client.snapshots.list({ source_instance_id: fork.id })).toEqual([]);
    expect(await client.snapshots.list()).toEqual([]);
  });
});

describe("compress again (extension)", () => {
  it("re-runs compression of a snapshot in none with a new policy, then refuses once compressed", async () => {
    const snapshot = await client.instances.snapshots.create("surf-src", { kind: "Standby", name: "raw" });
    expect(snapshot).toMatchObject({ compression: { enabled: false }, compression_state: "none" });
    // Extension: the QEMU that wrote its device state, read over QMP.
    expect(snapshot).toMatchObject({ qemu_version: expect.stringMatching(/^\d+\.\d+\.\d+$/) });
    expect(snapshot).toMatchObject({ machine_type: expect.stringMatching(/^pc-i440fx-\d+\.\d+$/) });
    const queued = await client.post<typeof snapshot>(`/snapshots/${snapshot.id}/compress`, {
      body: { compression: { enabled: true, algorithm: "lz4", level: 1 } },
    });
    expect(queued).toMatchObject({ compression: { enabled: true, algorithm: "lz4", level: 1 } });
    const compressed = await waitFor(
      async () => {
        const current = await client.snapshots.get(snapshot.id);
        return current.compression_state === "compressed" ? current : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250, what: "the snapshot to be compressed" },
    );
    expect(compressed.compressed_size_bytes).toBeGreaterThan(0);
    expect(await failure(client.post(`/snapshots/${snapshot.id}/compress`, { body: {} }))).toEqual({
      status: 409,
      code: "invalid_state",
    });
    await client.snapshots.delete(snapshot.id);
  });
});

describe("snapshot schedule", () => {
  it("runs twice through the snapshot pipeline and keeps only max_count of its own snapshots", async () => {
    const source = await client.instances.get("surf-src");
    const manual = await client.instances.snapshots.create("surf-src", { kind: "Standby", name: "manual" });
    // An hour apart: the two runs are promoted by hand, and no run of its own comes between them and the listing.
    const schedule = await client.instances.snapshotSchedule.update("surf-src", {
      interval: "1h",
      retention: { max_count: 1 },
      metadata: { origin: "schedule" },
      name_prefix: "every-minute",
    });
    expect(schedule).toMatchObject({ instance_id: source.id, interval: "1h", last_snapshot_id: null });

    const queue = new Queue(SCHEDULE_QUEUE, {
      connection: { url: redisUrl },
      prefix: queuePrefix(prefix, SCHEDULE_QUEUE),
    });
    // A run now instead of in up to a minute: promote the scheduler's next (delayed) job, as if it were due.
    const runNow = async (previous: string | null) => {
      const job = await waitFor(
        async () => (await queue.getDelayed()).find((delayed) => delayed.repeatJobKey === schedulerId(source.id)),
        { what: "the scheduler's next job" },
      );
      await job.promote();
      return waitFor(
        async () => {
          const current = await client.instances.snapshotSchedule.get("surf-src");
          return current.last_snapshot_id && current.last_snapshot_id !== previous ? current : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 250, what: "a scheduled run" },
      );
    };
    const first = await runNow(null);
    const firstSnapshot = await client.snapshots.get(first.last_snapshot_id!);
    expect(firstSnapshot).toMatchObject({ kind: "Standby", tags: { origin: "schedule" } });
    expect(firstSnapshot.name).toMatch(/^every-minute-\d{8}-\d{6}$/);
    const second = await runNow(first.last_snapshot_id!);
    expect(second).toMatchObject({ last_error: null });
    expect(Date.parse(second.next_run_at)).toBeGreaterThan(Date.now());
    await queue.close();

    // Retention kept the newest of the schedule's own snapshots and never touched the manual one.
    const remaining = (await client.snapshots.list({ source_instance_id: source.id })).map((snapshot) => snapshot.id);
    expect(remaining).toContain(manual.id);
    expect(remaining).toContain(second.last_snapshot_id);
    expect(remaining).not.toContain(first.last_snapshot_id);
    expect(remaining).toHaveLength(2);

    await client.instances.snapshotSchedule.delete("surf-src");
    for (const id of remaining) await client.snapshots.delete(id);
  });
});

describe("snapshot schedule across a restart", () => {
  it("survives a restart of every process with one scheduler, no backfill and no double run", async () => {
    const source = await client.instances.get("surf-src");
    const { last_snapshot_id: before } = await client.instances.snapshotSchedule.update("surf-src", {
      interval: "1m",
      retention: { max_count: 5 },
      metadata: { origin: "restart" },
    });
    const queue = new Queue(SCHEDULE_QUEUE, {
      connection: { url: redisUrl },
      prefix: queuePrefix(prefix, SCHEDULE_QUEUE),
    });
    const nextRuns = async () =>
      (await queue.getDelayed()).filter((delayed) => delayed.repeatJobKey === schedulerId(source.id));
    const [missed] = await waitFor(
      async () => {
        const runs = await nextRuns();
        return runs.length === 1 ? runs : undefined;
      },
      { what: "the next run" },
    );
    const missedDue = dueAt(missed!.id)!;

    // Every process stops and starts again on the same data dir and Redis (the VM outlives them). It stays down
    // until the next run is overdue past the skip threshold (half the 1m interval), so a backfill would show.
    const dataDir = service.dataDir;
    await service.stop("SIGTERM");
    const overdueAt = missedDue + 30_000 + 1_000;
    // Waits for the clock itself: nothing runs to signal it.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, overdueAt - Date.now())));
    await startSurfaceService(dataDir);
    await waitFor(async () => (await client.instances.get("surf-src")).state === "Running" || undefined, {
      timeoutMs: 30_000,
      what: "the instance again",
    });
    // The missed run is taken once the service is back, and skipped: no snapshot is made for it.
    const taken = await waitFor(
      async () => {
        const job = await queue.getJob(missed!.id!);
        return job?.finishedOn ? job : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250, what: "the missed run to be taken after the restart" },
    );
    expect(taken.returnvalue).toEqual({ outcome: "skipped", snapshot_id: null });
    // Still one scheduler with one next run, after the missed one: the restart neither duplicated it nor made up for it.
    const pending = await waitFor(
      async () => {
        const runs = await nextRuns();
        return runs.length === 1 && dueAt(runs[0]!.id)! > missedDue ? runs : undefined;
      },
      { what: "the run after the missed one" },
    );
    // It may have come due by itself while the service started (a minute after the missed one): then it runs anyway.
    await pending[0]!.promote().catch(async (error: unknown) => {
      if ((await pending[0]!.getState()) === "delayed") throw error;
    });
    const ran = await waitFor(
      async () => {
        const { last_snapshot_id: last } = await client.instances.snapshotSchedule.get("surf-src");
        return last && last !== before ? last : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 250, what: "the scheduled run after the restart" },
    );
    // The run's job done and no run for this instance waiting or running (the next is a minute away): a double run
    // would need one of those, so what exists now is every snapshot the restart and this run made.
    await waitFor(async () => ((await pending[0]!.getState()) === "completed" ? true : undefined), {
      what: "the promoted run's job to complete",
    });
    const runnable = async () =>
      (await queue.getJobs(["waiting", "active", "prioritized", "paused"])).filter(
        (job) => job.data?.payload?.instance_id === source.id,
      ).length;
    await waitFor(async () => ((await runnable()) === 0 ? true : undefined), { what: "no run waiting or running" });
    expect(await nextRuns()).toHaveLength(1);
    const made = (await client.snapshots.list({ source_instance_id: source.id })).filter(
      (snapshot) => snapshot.tags?.origin === "restart",
    );
    expect(made.map((snapshot) => snapshot.id)).toContain(ran);
    // Runs are an interval apart: two within half an interval would be one run done twice.
    const times = made.map((snapshot) => Date.parse(snapshot.created_at)).sort((left, right) => left - right);
    for (let index = 1; index < times.length; index++)
      expect(times[index]! - times[index - 1]!).toBeGreaterThan(30_000);
    await queue.close();
    await client.instances.snapshotSchedule.delete("surf-src");
    for (const snapshot of made) await client.snapshots.delete(snapshot.id);
  }, 300_000); // it waits up to 91 s for a run to be overdue
});

describe("wait", () => {
  it("returns when a stop lands", async () => {
    const waiting = client.instances.wait("surf-fork", { state: "Stopped", timeout: "2m" });
    await client.instances.stop("surf-fork");
    expect(await waiting).toEqual({ state: "Stopped", timed_out: false });
  });

  it("times out with the current state", async () => {
    expect(await client.instances.wait("surf-src", { state: "Standby", timeout: "1s" })).toEqual({
      state: "Running",
      timed_out: true,
    });
  });
});

describe("fork a Stopped instance", () => {
  it("forks it Stopped by default, and refuses Standby as a target", async () => {
    const fork = await client.instances.fork("surf-fork", { name: "surf-fork-2" });
    expect(fork).toMatchObject({ name: "surf-fork-2", state: "Stopped" });
    expect(await failure(client.instances.fork("surf-fork", { name: "surf-fork-3", target_state: "Standby" }))).toEqual(
      { status: 400, code: "invalid_request" },
    );
    expect(await failure(client.instances.fork("surf-fork", { name: "surf-src" }))).toEqual({
      status: 409,
      code: "name_conflict",
    });
  });
});

describe("standby with compression", () => {
  it("compresses the standby memory after its delay, and a restore brings the guest back from it", async () => {
    await waitForTick("surf-src", 1);
    const source = await client.instances.standby("surf-src", {
      compression: { enabled: true, algorithm: "zstd", level: 1 },
      compression_delay: "1s",
    });
    expect(source).toMatchObject({ state: "Standby", host_online: true });
    // Extension: the instance shows its standby compression as snapshots show theirs, pending until packed.
    const standbyCompression = (instance: unknown) =>
      (instance as { standby_compression?: Record<string, unknown> }).standby_compression;
    expect(standbyCompression(source)).toMatchObject({
      state: "pending",
      algorithm: "zstd",
      level: 1,
      compressed_size_bytes: null,
      error: null,
    });
    expect(Date.parse(standbyCompression(source)!.not_before as string)).toBeGreaterThan(Date.now() - 60_000);
    const atStandby = await consolePoint(guestConsole("surf-src"));
    const memory = path.join(service.dataDir, "instances", source.id, "memory.raw");
    await waitFor(() => existsSync(`${memory}.sfc`) && !existsSync(memory), {
      timeoutMs: 60_000,
      what: "the standby memory to be compressed",
    });
    const compressed = await waitFor(
      async () => {
        const status = standbyCompression(await client.instances.get("surf-src"));
        return status?.state === "compressed" ? status : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 250, what: "the instance to show its standby memory compressed" },
    );
    // The sizes are the packed file's and the RAM's (256 MB), not a figure of the job's.
    expect(compressed).toMatchObject({
      compressed_size_bytes: statSync(`${memory}.sfc`).size,
      uncompressed_size_bytes: 256 * 1024 ** 2,
      error: null,
    });
    expect(compressed.compressed_size_bytes as number).toBeLessThan(compressed.uncompressed_size_bytes as number);
    const restored = await client.instances.restore("surf-src");
    expect(restored.state).toBe("Running");
    expect(standbyCompression(restored)).toBeUndefined();
    expect(existsSync(`${memory}.sfc`)).toBe(false);
    await waitForResume(guestConsole("surf-src"), atStandby);
  });
});
