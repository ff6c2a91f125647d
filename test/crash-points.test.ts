// Kill a process at every named point between a durable write and its announcement (shared/crash-points.ts), then
// check that the work finishes or rolls back, nothing is duplicated, and the read model equals the hosts' records.
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CrashPoint } from "../shared/crash-points.ts";
import { expectConverged, hostTruth } from "./helpers/convergence.ts";
import { jsonOf, tempDir, waitFor } from "./helpers/fixtures.ts";
import { type RunningService, startService } from "./helpers/service.ts";

let service: RunningService;
let armedFile: string;
let armed: { dir: string; remove: () => void } | undefined;

beforeAll(async () => {
  armed = tempDir("crash-points");
  armedFile = path.join(armed.dir, "armed");
  writeFileSync(armedFile, "");
  service = await startService({
    ANNOUNCE_INTERVAL_MS: "3000",
    HOST_JOB_LOCK_MS: "3000",
    COMPRESSION_JOB_LOCK_MS: "3000",
    WORKER_RESTART_MAX_DELAY_MS: "1000",
    CRASH_POINTS_FILE: armedFile,
  });
  const source = await service.api("/instances", { json: { name: "src", size: "128MB" } });
  expect(source.status, await source.clone().text()).toBe(201);
}, 180_000);

afterAll(async () => {
  if (process.env.CRASH_TEST_LOG) writeFileSync(process.env.CRASH_TEST_LOG, service?.output() ?? "");
  await service?.stop("SIGTERM");
  service?.remove();
  armed?.remove();
});

const api = (pathAndQuery: string, init?: { method?: string; json?: unknown }) => service.api(pathAndQuery, init);

/** Arms the point, runs the request (answered after the restarted worker re-ran the job), checks convergence. */
async function crashAt(point: CrashPoint, request: () => Promise<Response>): Promise<Response> {
  writeFileSync(armedFile, `${point}\n`);
  const response = await request();
  await waitFor(() => (readArmed() === "" ? true : undefined), { timeoutMs: 5_000, what: `${point} to be reached` });
  await expectConverged((pathAndQuery) => api(pathAndQuery), [service.dataDir], 30_000);
  return response;
}

const readArmed = () => {
  try {
    return readFileSync(armedFile, "utf8").trim();
  } catch {
    return "";
  }
};

const nameOf = (point: CrashPoint) => point.replaceAll(".", "-");

const named = (name: string) => hostTruth(service.dataDir).instances.filter((instance) => instance.name === name);

describe("crash points", () => {
  it("instance create: after boot and after the record, one instance comes of it", async () => {
    for (const [point, name] of [
      ["instance-create.after-boot", "cp-boot"],
      ["instance-create.after-record", "cp-record"],
    ] as const) {
      const response = await crashAt(point, () => api("/instances", { json: { name, size: "128MB" } }));
      expect(response.status, `${point}: ${await response.clone().text()}`).toBe(201);
      expect(named(name)).toHaveLength(1);
      expect(named(name)[0]!.state).toBe("Running");
    }
  }, 240_000);

  it("instance stop: after the VM stopped and after the record, it ends Stopped", async () => {
    for (const [point, name] of [
      ["instance-stop.after-vm-stopped", "cp-boot"],
      ["instance-stop.after-record", "cp-record"],
    ] as const) {
      const response = await crashAt(point, () => api(`/instances/${name}/stop`, { method: "POST" }));
      expect(response.status, `${point}: ${await response.clone().text()}`).toBe(200);
      expect(named(name)[0]!.state).toBe("Stopped");
    }
  }, 240_000);

  it("instance delete: after the tombstone, the instance is gone everywhere", async () => {
    const response = await crashAt("instance-delete.after-tombstone", () =>
      api("/instances/cp-boot", { method: "DELETE" }),
    );
    expect(response.status).toBe(204);
    expect(named("cp-boot")).toHaveLength(0);
    expect((await api("/instances/cp-boot")).status).toBe(404);
  }, 240_000);

  it("snapshot capture, fork and delete: each point finishes the work once", async () => {
    const snapshots: string[] = [];
    for (const point of ["snapshot-capture.after-payload", "snapshot-capture.after-record"] as const) {
      const response = await crashAt(point, () =>
        api("/instances/src/snapshots", { json: { kind: "Standby", name: nameOf(point) } }),
      );
      expect(response.status, `${point}: ${await response.clone().text()}`).toBe(201);
      snapshots.push((await jsonOf(response)).id);
      const same = hostTruth(service.dataDir).snapshots.filter((snapshot) => snapshot.name === nameOf(point));
      expect(same).toHaveLength(1);
    }
    for (const [point, name] of [
      ["snapshot-fork.after-boot", "fork-boot"],
      ["snapshot-fork.after-record", "fork-record"],
    ] as const) {
      const response = await crashAt(point, () => api(`/snapshots/${snapshots[0]}/fork`, { json: { name } }));
      expect(response.status, `${point}: ${await response.clone().text()}`).toBe(201);
      expect(named(name)).toHaveLength(1);
    }
    const deleted = await crashAt("snapshot-delete.after-tombstone", () =>
      api(`/snapshots/${snapshots[1]}`, { method: "DELETE" }),
    );
    expect(deleted.status).toBe(204);
    expect((await api(`/snapshots/${snapshots[1]}`)).status).toBe(404);
  }, 240_000);

  it("compression: after the compressing and the compressed record, it ends compressed", async () => {
    for (const point of ["compression.after-started-record", "compression.after-compressed-record"] as const) {
      writeFileSync(armedFile, `${point}\n`);
      const response = await api("/instances/src/snapshots", {
        json: { kind: "Standby", name: nameOf(point), compression: { enabled: true, algorithm: "zstd", level: 1 } },
      });
      expect(response.status).toBe(201);
      const { id } = await jsonOf(response);
      await waitFor(
        async () =>
          (await jsonOf(await api(`/snapshots/${id}`))).compression_state === "compressed" ? true : undefined,
        { timeoutMs: 60_000, intervalMs: 250, what: `${point}: compression to finish` },
      );
      expect(readArmed()).toBe("");
      await expectConverged((pathAndQuery) => api(pathAndQuery), [service.dataDir], 30_000);
    }
  }, 240_000);
});
