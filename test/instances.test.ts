// Instances on real QEMU guests (TCG) through the whole service: lifecycle, logs, restarts, bad input.
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { sampleValue } from "./helpers/prometheus.ts";
import { apiConsole, consolePoint, waitForBootFromDisk, waitForResume } from "./helpers/resume.ts";
import { isAlive, type RunningService, startService } from "./helpers/service.ts";

let service: RunningService;

beforeAll(async () => {
  service = await startService();
}, 60_000);

afterAll(async () => {
  await service?.stop("SIGTERM");
  service?.remove();
});

async function create(name: string, extra: Record<string, unknown> = {}) {
  const response = await service.api("/instances", { json: { name, size: "128MB", ...extra } });
  expect(response.status, await response.clone().text()).toBe(201);
  return jsonOf(response);
}

async function logLines(name: string, tail = 200): Promise<string[]> {
  const response = await service.api(`/instances/${name}/logs?tail=${tail}`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("text/event-stream");
  return (await response.text())
    .split("\n")
    .filter((line) => line.startsWith("data: "))
    .map((line) => JSON.parse(line.slice(6)) as string);
}

/** The highest `tick N` in the console log, once it reaches at least `atLeast`. */
async function waitForTick(name: string, atLeast: number, timeoutMs = 60_000): Promise<number> {
  return waitFor(
    async () => {
      const ticks = (await logLines(name)).flatMap((line) => /^tick (\d+)$/.exec(line.trim())?.[1] ?? []).map(Number);
      const latest = Math.max(-1, ...ticks);
      return latest >= atLeast ? latest : undefined;
    },
    { timeoutMs, intervalMs: 250, what: `${name} to print tick ${atLeast}` },
  );
}

const post = (url: string) => service.api(url, { method: "POST" });
const qemuPid = async (id: string) =>
  Number((await import("node:fs")).readFileSync(path.join(service.dataDir, "instances", id, "qemu.pid"), "utf8"));

describe("instance lifecycle on QEMU", () => {
  it("boots, continues its tick count across standby/restore, and resumes from disk after stop/start", async () => {
    const instance = await create("lifecycle-1", { tags: { team: "core" } });
    expect(instance).toMatchObject({ name: "lifecycle-1", state: "Running", hypervisor: "qemu", size: "128MB" });
    expect(instance.id).toMatch(/^[a-z][a-z0-9]{23}$/);
    await waitForTick("lifecycle-1", 2);
    const guestConsole = apiConsole(service.api, "lifecycle-1");

    // Stats in the reference's shape, read from this guest's QEMU process (checked against /proc here).
    const statsResponse = await service.api("/instances/lifecycle-1/stats");
    const stats = await jsonOf(statsResponse);
    expect(statsResponse.status, JSON.stringify(stats)).toBe(200);
    expect(stats).toEqual({
      instance_id: instance.id,
      instance_name: "lifecycle-1",
      allocated_memory_bytes: 128 * 1024 ** 2,
      allocated_vcpus: instance.vcpus,
      cpu_seconds: expect.any(Number),
      memory_rss_bytes: expect.any(Number),
      memory_vms_bytes: expect.any(Number),
      memory_utilization_ratio: stats.memory_rss_bytes / (128 * 1024 ** 2),
      network_rx_bytes: 0,
      network_tx_bytes: 0,
    });
    const status = readFileSync(`/proc/${await qemuPid(instance.id)}/status`, "utf8");
    const vmSize = Number(/^VmSize:\s+(\d+) kB$/m.exec(status)![1]) * 1024;
    expect(stats.memory_vms_bytes).toBe(vmSize); // QEMU maps nothing new while it runs a guest
    expect(stats.memory_rss_bytes).toBeGreaterThan(0);
    expect(stats.memory_rss_bytes).toBeLessThan(stats.memory_vms_bytes);
    expect(stats.cpu_seconds).toBeGreaterThan(0); // it booted a kernel under TCG

    const standby = await jsonOf(await post("/instances/lifecycle-1/standby"));
    expect(standby).toMatchObject({ state: "Standby", has_snapshot: true });
    const atStandby = await consolePoint(guestConsole);

    const restoreStarted = Date.now();
    const restored = await jsonOf(await post("/instances/lifecycle-1/restore"));
    expect(restored).toMatchObject({ state: "Running", has_snapshot: false });
    // No reboot: the count goes on from where it was paused, and there is no second boot banner.
    await waitForResume(guestConsole, atStandby);
    const restoreMs = Date.now() - restoreStarted;
    expect(restoreMs).toBeLessThan(60_000);

    const stopped = await jsonOf(await post("/instances/lifecycle-1/stop"));
    expect(stopped).toMatchObject({ state: "Stopped", has_snapshot: false });
    const noVm = await service.api("/instances/lifecycle-1/stats");
    expect({ status: noVm.status, code: (await jsonOf(noVm)).code }).toEqual({ status: 409, code: "invalid_state" });
    const atStop = await consolePoint(guestConsole);

    const started = await jsonOf(await post("/instances/lifecycle-1/start"));
    expect(started.state).toBe("Running");
    // A fresh boot that resumes counting from the tick the guest wrote to its disk.
    await waitForBootFromDisk(guestConsole, atStop, { ticks: 1 });

    const listed = await jsonOf(await service.api("/instances?state=Running&tags[team]=core"));
    expect(listed.map((item: { id: string }) => item.id)).toEqual([instance.id]);

    const pid = await qemuPid(instance.id);
    expect((await service.api("/instances/lifecycle-1", { method: "DELETE" })).status).toBe(204);
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(path.join(service.dataDir, "instances", instance.id))).toBe(false);
    expect((await service.api("/instances/lifecycle-1")).status).toBe(404);
  });

  it("restores a standby whose RAM was compressed, and /metrics shows the unpacking and each time to Running", async () => {
    const scrape = async () => (await service.api("/metrics")).text();
    const qemu = { hypervisor: "qemu" };
    const prepared = (restore_source: string) => ({ ...qemu, restore_source, result: "success" });
    const figures = (text: string) => ({
      created: sampleValue(text, "snapfleet_instances_time_to_running_seconds_count", { ...qemu, operation: "create" }),
      restored: sampleValue(text, "snapfleet_instances_time_to_running_seconds_count", {
        ...qemu,
        operation: "restore",
      }),
      unpacked: sampleValue(text, "snapfleet_snapshot_restore_memory_prepare_total", prepared("decompress")),
      unpackedSeconds: sampleValue(
        text,
        "snapfleet_snapshot_restore_memory_prepare_duration_seconds_count",
        prepared("decompress"),
      ),
    });
    // Other cases in this file may have counted already: compare with what was there before.
    const before = figures(await scrape());
    const instance = await create("packed-1");
    await waitForTick("packed-1", 1);
    const guestConsole = apiConsole(service.api, "packed-1");
    const standby = await service.api("/instances/packed-1/standby", {
      json: { compression: { enabled: true, algorithm: "zstd", level: 1 } },
    });
    expect(standby.status, await standby.clone().text()).toBe(200);
    const atStandby = await consolePoint(guestConsole);
    const memory = path.join(service.dataDir, "instances", instance.id, "memory.raw");
    await waitFor(() => existsSync(`${memory}.sfc`) && !existsSync(memory), {
      timeoutMs: 60_000,
      what: "the standby memory to be compressed",
    });
    expect(await jsonOf(await post("/instances/packed-1/restore"))).toMatchObject({ state: "Running" });
    expect(existsSync(`${memory}.sfc`)).toBe(false);
    await waitForResume(guestConsole, atStandby);

    const plusOne = (count: number | undefined) => (count ?? 0) + 1;
    const after = await waitFor(
      async () => {
        const now = figures(await scrape());
        return now.restored === plusOne(before.restored) ? now : undefined;
      },
      { what: "the restore's time to Running in /metrics" },
    );
    expect(after).toEqual({
      created: plusOne(before.created),
      restored: plusOne(before.restored),
      unpacked: plusOne(before.unpacked),
      unpackedSeconds: plusOne(before.unpackedSeconds),
    });
    expect((await service.api("/instances/packed-1", { method: "DELETE" })).status).toBe(204);
  }, 150_000);

  it("re-attaches to running guests when the capture worker restarts, and reports a killed QEMU", async () => {
    const instance = await create("survivor-1");
    await waitForTick("survivor-1", 1);
    const pid = await qemuPid(instance.id);
    const workerLine = service
      .output()
      .split("\n")
      .findLast((line) => line.includes('"capture worker started"'));
    process.kill(JSON.parse(workerLine!).pid, "SIGKILL");
    await waitFor(
      () =>
        service
          .output()
          .split("\n")
          .filter((l) => l.includes('"capture worker started"')).length >= 2
          ? true
          : undefined,
      { timeoutMs: 30_000, what: "the capture worker to restart" },
    );
    expect(isAlive(pid)).toBe(true);
    // The restarted worker drives the same VM: standby works on it.
    expect((await jsonOf(await post("/instances/survivor-1/standby"))).state).toBe("Standby");
    expect((await jsonOf(await post("/instances/survivor-1/restore"))).state).toBe("Running");

    process.kill(await qemuPid(instance.id), "SIGKILL");
    const unknown = await waitFor(
      async () => {
        const current = await jsonOf(await service.api("/instances/survivor-1"));
        return current.state === "Unknown" ? current : undefined;
      },
      { timeoutMs: 20_000, what: "the instance to show Unknown" },
    );
    expect(unknown.state_error).toContain("QEMU process");
    expect((await jsonOf(await post("/instances/survivor-1/stop"))).state).toBe("Stopped");
    expect((await service.api("/instances/survivor-1", { method: "DELETE" })).status).toBe(204);
  });
});

describe("bad input", () => {
  it.each([
    [{ name: "Bad_Name" }, "name"],
    [{ name: "-dash" }, "name"],
    [{ name: "ok-name", size: "lots" }, "size"],
    [{ name: "ok-name", size: "1KB" }, "size"],
    [{ name: "ok-name", vcpus: 0 }, "vcpus"],
    [{ name: "ok-name", tags: { "bad key!": "x" } }, "tags"],
    [{}, "name"],
  ])("rejects %j with 400 naming %s", async (body, field) => {
    const response = await service.api("/instances", { json: body });
    expect(response.status).toBe(400);
    const error = await jsonOf(response);
    expect(error.code).toBe("invalid_request");
    expect(error.message).toContain(field);
  });

  it("rejects malformed JSON with 400", async () => {
    const response = await fetch(`${service.baseUrl}/instances`, {
      method: "POST",
      headers: { authorization: `Bearer ${service.apiKey()}`, "content-type": "application/json" },
      body: "{not json",
    });
    expect(response.status).toBe(400);
    expect((await jsonOf(response)).code).toBe("invalid_request");
  });

  it("rejects a hypervisor this host cannot run, naming the available ones", async () => {
    const response = await service.api("/instances", { json: { name: "fc-1", hypervisor: "firecracker" } });
    expect(response.status).toBe(501);
    expect(await jsonOf(response)).toEqual({
      code: "not_supported",
      message: expect.stringContaining("available: qemu"),
    });
  });

  it("rejects an unknown image with 400 and leaves nothing behind", async () => {
    const response = await service.api("/instances", { json: { name: "noimage-1", image: "ubuntu" } });
    expect(response.status).toBe(400);
    expect((await jsonOf(response)).message).toContain("unknown image ubuntu");
    expect((await service.api("/instances/noimage-1")).status).toBe(404);
    // The name was given back.
    expect((await service.api("/instances", { json: { name: "noimage-1", image: "ubuntu" } })).status).toBe(400);
  });

  it("answers 404 for unknown instances and 409 for duplicate names and illegal transitions", async () => {
    expect((await service.api("/instances/nope-nope")).status).toBe(404);
    expect((await post("/instances/nope-nope/stop")).status).toBe(404);
    await create("dup-1");
    const duplicate = await service.api("/instances", { json: { name: "dup-1", size: "128MB" } });
    expect(duplicate.status).toBe(409);
    expect((await jsonOf(duplicate)).code).toBe("name_conflict");
    const startRunning = await post("/instances/dup-1/start");
    expect(startRunning.status).toBe(409);
    expect((await jsonOf(startRunning)).code).toBe("invalid_state");
    await post("/instances/dup-1/stop");
    const standbyStopped = await post("/instances/dup-1/standby");
    expect(standbyStopped.status).toBe(409);
    expect((await jsonOf(standbyStopped)).message).toContain("Stopped");
    expect((await service.api("/instances/dup-1", { method: "DELETE" })).status).toBe(204);
  });
});
