// GET /instances/{id}/wait through the official SDK against the in-process app, fed by events on the test Redis.
import type Hypeman from "@onkernel/hypeman";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { subjectOf } from "../../shared/events/catalog.ts";
import { EventStream } from "../../shared/events/stream.ts";
import { newId } from "../../shared/ids.ts";
import { connectRedis, waitForRedisReady } from "../../shared/redis.ts";
import type { Instance } from "../../shared/schemas/instance.ts";
import { createTestApp, sdkClient, type TestApp } from "../../test/helpers/app.ts";
import { jsonOf } from "../../test/helpers/fixtures.ts";
import { describeWith } from "../../test/helpers/needs.ts";
import { projectedInstance } from "../../test/helpers/resources.ts";

let t: TestApp;
let client: Hypeman;
let redis: Redis;
let stream: EventStream;

beforeAll(async () => {
  t = await createTestApp();
  client = sdkClient(t);
  redis = connectRedis(t.redisUrl, "producer", 1_000);
  await waitForRedisReady(redis, 5_000);
  stream = new EventStream(redis, t.prefix);
});
afterAll(async () => {
  redis.disconnect();
  await t.close();
});

const created = (overrides: Partial<Instance> = {}) => projectedInstance(stream, t.projector, overrides);

/**
 * Starts a wait and resolves once the server holds it: subscribed to the projector and not answered. From then on
 * only an applied event can answer it, so events appended after this are what wakes it.
 */
async function pendingWait(id: string, query: Parameters<Hypeman["instances"]["wait"]>[1]) {
  const subscribe = vi.spyOn(t.projector, "onApplied");
  let answered = false;
  const waiting = client.instances.wait(id, query).finally(() => {
    answered = true;
  });
  try {
    await vi.waitFor(() => expect(subscribe).toHaveBeenCalled(), { timeout: 5_000 });
  } finally {
    subscribe.mockRestore();
  }
  expect(answered, "the wait answered before any event came").toBe(false);
  return { waiting };
}

describe("GET /instances/{id}/wait", () => {
  it("answers at once when the instance is already in the state", async () => {
    const instance = await created();
    expect(await client.instances.wait(instance.name, { state: "Running" })).toEqual({
      state: "Running",
      timed_out: false,
    });
  });

  it("answers when the event that brings the state is applied, not before", async () => {
    const instance = await created();
    const { waiting } = await pendingWait(instance.id, { state: "Stopped", timeout: "30s" });
    await stream.append(
      "instance.updated",
      subjectOf.instance(instance.id),
      {
        instance: { ...instance, state: "Standby" },
      },
      { version: 2 },
    );
    await stream.append(
      "instance.updated",
      subjectOf.instance(instance.id),
      {
        instance: { ...instance, state: "Stopped" },
      },
      { version: 3 },
    );
    expect(await waiting).toEqual({ state: "Stopped", timed_out: false });
  });

  it("stops waiting when the instance enters Unknown", async () => {
    const instance = await created();
    const { waiting } = await pendingWait(instance.id, { state: "Stopped" });
    await stream.append(
      "instance.updated",
      subjectOf.instance(instance.id),
      {
        instance: { ...instance, state: "Unknown", state_error: "QEMU is gone" },
      },
      { version: 4 },
    );
    expect(await waiting).toEqual({ state: "Unknown", state_error: "QEMU is gone", timed_out: false });
  });

  it("answers the current state with timed_out after the timeout", async () => {
    const instance = await created();
    expect(await client.instances.wait(instance.id, { state: "Stopped", timeout: "100ms" })).toEqual({
      state: "Running",
      timed_out: true,
    });
  });

  it("refuses a timeout that is not a Go duration, and an unknown instance", async () => {
    const instance = await created();
    const bad = await t.request(`/instances/${instance.id}/wait?state=Stopped&timeout=soon`);
    expect(bad.status).toBe(400);
    expect((await jsonOf(bad)).code).toBe("invalid_timeout");
    expect((await t.request("/instances/nope/wait?state=Stopped")).status).toBe(404);
    const gone = await t.request(`/instances/${instance.id}/wait?state=Gone`);
    expect([gone.status, (await jsonOf(gone)).code]).toEqual([400, "invalid_request"]);
  });

  it("refuses Unknown as a target: a wait ends there on its own", async () => {
    const instance = await created();
    const unknown = await t.request(`/instances/${instance.id}/wait?state=Unknown`);
    expect([unknown.status, (await jsonOf(unknown)).code]).toEqual([400, "invalid_request"]);
  });
});

describe("instance references as the reference takes them", () => {
  it("finds an instance by a unique prefix of its id, and answers 409 ambiguous when several share it", async () => {
    const stem = `p${newId().slice(1, 12)}`;
    const first = await created({ id: `${stem}a${newId().slice(0, 11)}` });
    const second = await created({ id: `${stem}b${newId().slice(0, 11)}` });
    expect((await client.instances.get(`${stem}a`)).id).toBe(first.id);
    expect((await client.instances.get(second.id.slice(0, 14))).id).toBe(second.id);
    const both = await t.request(`/instances/${stem}`);
    expect([both.status, (await jsonOf(both)).code]).toEqual([409, "ambiguous"]);
    expect((await t.request(`/instances/${stem}c`)).status).toBe(404);
    expect((await t.request(`/instances/${stem}_`)).status).toBe(404);
  });

  it("omits an unset snapshot_policy rather than sending null", async () => {
    const instance = await created({ snapshot_policy: null });
    const body = (await jsonOf(await t.request(`/instances/${instance.id}`))) as Record<string, unknown>;
    expect(body.name).toBe(instance.name);
    expect("snapshot_policy" in body).toBe(false);
    const policy = { compression: { enabled: true, algorithm: "lz4" } };
    const withPolicy = await created({ snapshot_policy: policy });
    expect((await client.instances.get(withPolicy.id)).snapshot_policy).toEqual(policy);
  });
});

describeWith("postgres", "wait on a second replica (postgres)", () => {
  let a: TestApp;
  let b: TestApp;

  beforeAll(async () => {
    a = await createTestApp({ dialect: "postgres", replicaId: "replica-a" });
    b = await createTestApp({ replicaOf: a, replicaId: "replica-b" });
    // Only replica A applies events: B learns of them from the stream alone.
    await b.projector.stop();
  }, 60_000);
  afterAll(async () => {
    await b?.close();
    await a?.close();
  });

  it("wakes on an event another replica applied, long before its timeout", async () => {
    const replicaStream = new EventStream(redis, a.prefix);
    const instance = await projectedInstance(replicaStream, a.projector);
    const waiting = b.request(`/instances/${instance.id}/wait?state=Stopped&timeout=30s`);
    // The wait has read the instance and subscribed once B answers a later request (requests run in order here),
    // and B's stream tail is live.
    await b.request(`/instances/${instance.id}`);
    await b.eventFeed.tailing;
    await replicaStream.append(
      "instance.updated",
      subjectOf.instance(instance.id),
      { instance: { ...instance, state: "Stopped" } },
      { version: 2 },
    );
    expect(await jsonOf(await waiting)).toEqual({ state: "Stopped", timed_out: false });
  }, 60_000);
});
