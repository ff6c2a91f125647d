// A resource that vanished from its host (its directory removed by hand) leaves the read model at the host's next
// complete announcement, whether it vanished while the service ran or while it was down. Real guests, real Redis,
// the whole service.
import { rmSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { sampleValue } from "./helpers/prometheus.ts";
import { type RunningService, startService } from "./helpers/service.ts";

/** Short, so each case waits a few announcements at most. */
const SETTINGS = { ANNOUNCE_INTERVAL_MS: "1000", WORKER_RESTART_MAX_DELAY_MS: "1000" };

let service: RunningService;

beforeAll(async () => {
  service = await startService(SETTINGS);
  const created = await service.api("/instances", { json: { name: "ghosts", size: "128MB" } });
  expect(created.status, await created.clone().text()).toBe(201);
}, 120_000);

afterAll(async () => {
  await service?.stop("SIGTERM");
  service?.remove();
});

async function snapshot(name: string): Promise<{ id: string }> {
  const response = await service.api("/instances/ghosts/snapshots", { json: { kind: "Standby", name } });
  expect(response.status, await response.clone().text()).toBe(201);
  return jsonOf(response);
}

const listedIds = async (): Promise<string[]> =>
  (await jsonOf(await service.api("/snapshots"))).map((snapshot: { id: string }) => snapshot.id);

/** Removes the snapshot's directory from the host, as an operator cleaning by hand would. */
const removeOnHost = (id: string) => rmSync(path.join(service.dataDir, "snapshots", id), { recursive: true });

async function goneFromReadModel(id: string): Promise<void> {
  await waitFor(async () => ((await service.api(`/snapshots/${id}`)).status === 404 ? true : undefined), {
    timeoutMs: 30_000,
    what: `snapshot ${id} to be gone after the host's next announcement`,
  });
  expect(await listedIds()).not.toContain(id);
}

describe("resources that vanished from their host", () => {
  it("removed while the service runs: GET answers 404, the list omits it, the rest stays", async () => {
    const kept = await snapshot("kept");
    const vanished = await snapshot("vanished-up");
    expect(await listedIds()).toEqual(expect.arrayContaining([kept.id, vanished.id]));
    removeOnHost(vanished.id);
    await goneFromReadModel(vanished.id);
    // Counted, by kind and host, not only dropped.
    const metrics = await (await service.api("/metrics")).text();
    expect(
      sampleValue(metrics, "snapfleet_read_model_vanished_total", { kind: "snapshot", host: service.hostId() }),
    ).toBe(1);
    expect((await service.api(`/snapshots/${kept.id}`)).status).toBe(200);
    expect((await service.api("/instances/ghosts")).status).toBe(200);
    // Its name is free again.
    await snapshot("vanished-up");
  });

  it("removed while the service is down: gone once the restarted host has announced", async () => {
    const vanished = await snapshot("vanished-down");
    expect(await listedIds()).toContain(vanished.id);
    await service.stop("SIGTERM");
    removeOnHost(vanished.id);
    const dataDir = service.dataDir;
    const remove = service.remove;
    service = await startService({ ...SETTINGS, DATA_DIR: dataDir });
    service.remove = remove;
    await goneFromReadModel(vanished.id);
    expect((await service.api("/instances/ghosts")).status).toBe(200);
  });
});
