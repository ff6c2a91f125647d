// Forks and restores of a Standby snapshot are refused up front (409 invalid_state) on a host whose QEMU cannot
// load its device state: in-process app, snapshot and host as the worker would announce them.
import type Hypeman from "@onkernel/hypeman";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { subjectOf } from "../../shared/events/catalog.ts";
import { EventStream } from "../../shared/events/stream.ts";
import { announceHost } from "../../shared/hosts.ts";
import { connectRedis, waitForRedisReady } from "../../shared/redis.ts";
import { createTestApp, sdkClient, type TestApp } from "../../test/helpers/app.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";

let t: TestApp;
let client: Hypeman;

beforeAll(async () => {
  t = await createTestApp();
  client = sdkClient(t);
  const redis = connectRedis(t.redisUrl, "producer", 1_000);
  await waitForRedisReady(redis, 5_000);
  const now = new Date().toISOString();
  await announceHost(redis, t.prefix, {
    id: "host-test",
    hypervisors: ["qemu"],
    started_at: now,
    last_seen_at: now,
    pid: 1,
    qemu: { version: "10.0.2", machines: ["pc", "pc-i440fx-10.0", "pc-i440fx-7.2"] },
  });
  await announceHost(redis, t.prefix, {
    id: "host-old",
    hypervisors: ["qemu"],
    started_at: now,
    last_seen_at: now,
    pid: 2,
    qemu: { version: "7.2.19", machines: ["pc", "pc-i440fx-7.2"] },
  });
  const stream = new EventStream(redis, t.prefix);
  const source = sampleInstance({ name: "old-qemu", state: "Stopped" });
  await stream.append("instance.created", subjectOf.instance(source.id), { instance: source }, { version: 1 });
  for (const [id, qemu_version, machine_type] of [
    ["aaaaaaaaaaaaaaaaaaaaaaaa", "7.2.19", "pc-i440fx-7.2"],
    ["bbbbbbbbbbbbbbbbbbbbbbbb", "10.1.0", "pc-i440fx-10.1"],
    ["cccccccccccccccccccccccc", "10.0.2", "pc-i440fx-10.0"],
  ] as const) {
    const snapshot = sampleSnapshot(source, { id, qemu_version, machine_type });
    const { event } = await stream.append("snapshot.created", subjectOf.snapshot(id), { snapshot }, { version: 2 });
    await t.projector.waitFor(event.id, 5_000);
  }
  redis.disconnect();
});
afterAll(() => t.close());

async function refusal(call: Promise<unknown>) {
  const error = (await call.catch((reason: unknown) => reason)) as {
    status: number;
    error: { code: string; message: string };
  };
  return { status: error.status, code: error.error.code, message: error.error.message };
}

describe("QEMU compatibility of a Standby snapshot", () => {
  it("refuses a fork on a host of another QEMU major version", async () => {
    expect(await refusal(client.snapshots.fork("aaaaaaaaaaaaaaaaaaaaaaaa", { name: "f1" }))).toEqual({
      status: 409,
      code: "invalid_state",
      message: expect.stringContaining("taken on QEMU 7.2.19 and this host runs QEMU 10.0.2"),
    });
  });

  it("checks the host a cross-host fork runs on, not the owner", async () => {
    const call = client.snapshots.fork("cccccccccccccccccccccccc", { name: "f2", host_id: "host-old" } as never);
    expect(await refusal(call)).toEqual({
      status: 409,
      code: "invalid_state",
      message: expect.stringMatching(/on host host-old: .*taken on QEMU 10\.0\.2 and this host runs QEMU 7\.2\.19/),
    });
  });

  it("refuses a restore whose machine type the host's QEMU does not know", async () => {
    const call = client.instances.snapshots.restore("bbbbbbbbbbbbbbbbbbbbbbbb", { id: "old-qemu" });
    expect(await refusal(call)).toEqual({
      status: 409,
      code: "invalid_state",
      message: expect.stringContaining("machine type pc-i440fx-10.1 is unknown"),
    });
  });
});
