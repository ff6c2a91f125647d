import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventStreamKey } from "../../shared/events/stream.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import { createTestApp, type TestApp } from "../../test/helpers/app.ts";
import { jsonOf } from "../../test/helpers/fixtures.ts";

describe("GET /events/dead-letters", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(() => t.close());

  it("lists an entry the read model set aside, with its error, and counts it in /metrics", async () => {
    const redis = connectRedis(t.redisUrl, "worker", 1_000);
    const body = '{"id":"evt_unreadable","type":"no.such.event"}';
    const streamId = await redis.xadd(eventStreamKey(t.prefix), "*", "event", body);
    await expect.poll(async () => (await jsonOf(await t.request("/events/dead-letters"))).length).toBe(1);
    const [letter] = await jsonOf(await t.request("/events/dead-letters?limit=5"));
    expect(letter).toMatchObject({ stream_id: streamId, attempts: 1, fields: ["event", body] });
    expect(letter.error).not.toBe("");
    const metrics = await (await t.request("/metrics")).text();
    expect(metrics).toMatch(/^snapfleet_read_model_dead_letters_total 1$/m);
    await closeRedis(redis);
  });

  it("refuses a limit out of range with 400", async () => {
    const response = await t.request("/events/dead-letters?limit=0");
    expect(response.status).toBe(400);
    expect((await jsonOf(response)).code).toBe("invalid_request");
  });
});
