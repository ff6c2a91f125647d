// A request that names a host the directory lacks: unknown to the service is a final 400, but a host the read model
// knows (it owns resources; Redis lost its directory entry and its worker has not announced itself again) is a
// retryable 503. In-process app, resources as a host's events would make them.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { subjectOf } from "../../shared/events/catalog.ts";
import { EventStream } from "../../shared/events/stream.ts";
import { connectRedis, waitForRedisReady } from "../../shared/redis.ts";
import { createTestApp, type TestApp } from "../../test/helpers/app.ts";
import { sampleInstance } from "../../test/helpers/resources.ts";

let t: TestApp;

beforeAll(async () => {
  t = await createTestApp();
  const redis = connectRedis(t.redisUrl, "producer", 1_000);
  await waitForRedisReady(redis, 5_000);
  const instance = sampleInstance({ name: "left-behind", host_id: "host-unannounced" });
  const { event } = await new EventStream(redis, t.prefix).append(
    "instance.created",
    subjectOf.instance(instance.id),
    { instance },
    { version: 1 },
  );
  await t.projector.waitFor(event.id, 5_000);
  redis.disconnect();
});
afterAll(() => t.close());

describe("a named host missing from the directory", () => {
  it("is a retryable 503 when the read model knows it, a 400 when nothing does", async () => {
    const known = await t.request("/instances", {
      method: "POST",
      json: { name: "placed-1", host_id: "host-unannounced" },
    });
    expect(known.status).toBe(503);
    expect(await known.json()).toMatchObject({ code: "unavailable" });
    const unknown = await t.request("/instances", {
      method: "POST",
      json: { name: "placed-2", host_id: "host-never-seen" },
    });
    expect(unknown.status).toBe(400);
  });
});
