// A restore that fails midway (here: the snapshot's disk payload is gone, so the copy fails after the instance's VM,
// memory and device state were let go) leaves the instance Stopped with a state_error, never a record that still says
// Standby with has_snapshot over discarded files.
import { rmSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { type RunningService, startService } from "./helpers/service.ts";

let service: RunningService;

beforeAll(async () => {
  service = await startService({}, { readyTimeoutMs: 120_000 });
}, 180_000);

afterAll(async () => {
  await service?.stop("SIGTERM");
  service?.remove();
});

// biome-ignore lint/suspicious/noExplicitAny: answers are checked field by field
async function ok(response: Promise<Response>, status: number): Promise<any> {
  const answered = await response;
  expect(answered.status, await answered.clone().text()).toBe(status);
  return answered.status === 204 ? undefined : jsonOf(answered);
}

describe("a restore that fails", () => {
  it("leaves the instance Stopped with a state_error, not Standby over discarded files", async () => {
    const instance = await ok(service.api("/instances", { json: { name: "rf", size: "128MB" } }), 201);
    await ok(service.api("/instances/rf/standby", { json: {} }), 200);
    const snapshot = await ok(service.api("/instances/rf/snapshots", { json: { kind: "Standby" } }), 201);
    rmSync(path.join(service.dataDir, "snapshots", snapshot.id, "disk.raw"));

    const failed = await service.api(`/instances/rf/snapshots/${snapshot.id}/restore`, { json: {} });
    expect(failed.status).toBeGreaterThanOrEqual(400);

    const onHost = await waitFor(
      async () => {
        const served = await jsonOf(await service.api(`/instances/${instance.id}`));
        return served.state === "Stopped" ? served : undefined;
      },
      { timeoutMs: 30_000, what: "the instance to read Stopped" },
    );
    expect(onHost.has_snapshot).toBe(false);
    expect(onHost.state_error).toMatch(new RegExp(`restore from snapshot ${snapshot.id} failed`));
  }, 300_000);
});
