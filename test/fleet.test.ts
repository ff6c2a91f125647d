// Three worker hosts on one machine (test/helpers/fleet.ts): placement, choosing a host, a host that goes away and
// comes back. Two guests boot in this file; everything else forks or reads.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { consoleTicks, waitForTick } from "./helpers/console.ts";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { type Fleet, startFleet } from "./helpers/fleet.ts";

let fleet: Fleet;
const api = (pathAndQuery: string) => fleet.api(pathAndQuery);

beforeAll(async () => {
  fleet = await startFleet(3);
}, 90_000);

afterAll(async () => {
  await fleet?.stop();
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

describe("a fleet of three hosts", () => {
  // Shared by the steps below, in order.
  let pinned: { id: string; name: string; host_id: string };
  let snapshotId: string;

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
  }, 120_000);

  it("forks a snapshot on the host that stores it; another host_id is refused until payloads move", async () => {
    await waitForTick(api, pinned.name, 2);
    const snapshot = await post(`/instances/${pinned.name}/snapshots`, { kind: "Standby" });
    expect(snapshot.status, JSON.stringify(snapshot.body)).toBe(201);
    expect(snapshot.body).toMatchObject({ host_id: "fleet-c", host_online: true });
    snapshotId = snapshot.body.id;
    const atSnapshot = Math.max(...(await consoleTicks(api, pinned.name)));

    const fork = await post(`/snapshots/${snapshotId}/fork`, { name: "pinned-fork" });
    expect(fork.status, JSON.stringify(fork.body)).toBe(201);
    expect(fork.body).toMatchObject({ host_id: "fleet-c", state: "Running" });
    expect(await waitForTick(api, "pinned-fork", atSnapshot + 1)).toBeGreaterThan(atSnapshot);

    expect((await post(`/snapshots/${snapshotId}/fork`, { name: "elsewhere", host_id: "fleet-z" })).status).toBe(400);
  }, 120_000);

  it("a host that goes away: work for it fails at once with 503, its resources stay listed and say so", async () => {
    const instancesBefore = ids(await jsonOf(await api("/instances")));
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
        expect(instance).toMatchObject({ state: "Running", host_online: true });
      }
    }
    const snapshot = await jsonOf(await api(`/snapshots/${snapshotId}`));
    expect(snapshot).toMatchObject({ host_id: "fleet-c", host_online: false });
    expect(ids(await jsonOf(await api("/snapshots")))).toEqual([snapshotId]);
  });

  it("the host coming back: its guests run on, nothing is duplicated", async () => {
    const instancesBefore = ids(await jsonOf(await api("/instances")));
    const before = Math.max(...(await consoleTicks(api, pinned.name)));
    await fleet.host("fleet-c").restartCapture();
    await waitFor(async () => ((await hostsById())["fleet-c"]!.online ? true : undefined));

    const instance = await jsonOf(await api(`/instances/${pinned.name}`));
    expect(instance).toMatchObject({ state: "Running", state_error: null, host_online: true });
    expect(await waitForTick(api, pinned.name, before + 1)).toBeGreaterThan(before);
    expect(ids(await jsonOf(await api("/instances")))).toEqual(instancesBefore);
    expect(ids(await jsonOf(await api("/snapshots")))).toEqual([snapshotId]);
    expect(await jsonOf(await api(`/snapshots/${snapshotId}`))).toMatchObject({ host_online: true });
    // Work for it goes through again.
    const fork = await post(`/snapshots/${snapshotId}/fork`, { name: "after-return" });
    expect(fork.status, JSON.stringify(fork.body)).toBe(201);
  }, 120_000);
});
