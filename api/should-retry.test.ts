// The official SDK retries 409 and every 5xx twice by default: answers a retry cannot fix, or that could do the work
// twice, carry `x-should-retry: false`, and the SDK (default retries, no Idempotency-Key) sends the request once.
import Hypeman from "@onkernel/hypeman";
import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EventStream } from "../shared/events/stream.ts";
import { queueName } from "../shared/jobs/catalog.ts";
import { connectRedis, waitForRedisReady } from "../shared/redis.ts";
import { createTestApp, TEST_API_KEY, type TestApp } from "../test/helpers/app.ts";
import { announceFakeHost } from "../test/helpers/hosts.ts";
import { projectedInstance } from "../test/helpers/resources.ts";

const HOST = "host-silent";
let t: TestApp;
let redis: Redis;
const sent: string[] = [];

/** The SDK as a caller uses it: default retries, no Idempotency-Key; every request it sends is counted. */
const client = () =>
  new Hypeman({
    apiKey: TEST_API_KEY,
    baseURL: "http://app.test",
    fetch: (input, init) => {
      sent.push(`${init?.method} ${new URL(input as string).pathname}`);
      return Promise.resolve(t.app.request(input as string, init as RequestInit));
    },
  });

beforeAll(async () => {
  t = await createTestApp({ jobResultTimeoutMs: 1_000 });
  redis = connectRedis(t.redisUrl, "producer", 1_000);
  await waitForRedisReady(redis, 5_000);
  // Online in the directory, but no worker takes its jobs: every host command runs into the 504.
  await announceFakeHost(redis, t.prefix, HOST, { online: true });
}, 60_000);
afterAll(async () => {
  redis.disconnect();
  await t.close();
});

const runningInstance = () => projectedInstance(new EventStream(redis, t.prefix), t.projector, { host_id: HOST });

describe("x-should-retry", () => {
  it("a 504'd capture is sent once by the SDK, and queued once", async () => {
    const instance = await runningInstance();
    sent.length = 0;
    const capture = client().instances.snapshots.create(instance.id, { kind: "Standby" });
    await expect(capture).rejects.toMatchObject({ status: 504 });
    expect(sent).toEqual([`POST /instances/${instance.id}/snapshots`]);
    const queued = await t.jobs.queue(queueName("host", HOST)).getJobs(["waiting", "delayed", "active"]);
    expect(queued.filter((job) => job.name === "snapshot.capture")).toHaveLength(1);
  }, 60_000);

  it("a 409 that a retry cannot change is sent once", async () => {
    const instance = await runningInstance();
    sent.length = 0;
    const response = await t.request(`/instances/${instance.id}/snapshots`, {
      method: "POST",
      json: { kind: "Stopped" },
    });
    expect([response.status, response.headers.get("x-should-retry")]).toEqual([409, "false"]);
    await expect(client().instances.snapshots.create(instance.id, { kind: "Stopped" })).rejects.toMatchObject({
      status: 409,
    });
    expect(sent).toEqual([`POST /instances/${instance.id}/snapshots`]);
  });

  it("leaves answers a retry may fix as they were", async () => {
    const response = await t.request("/instances/nope-nope");
    expect([response.status, response.headers.get("x-should-retry")]).toEqual([404, null]);
  });
});
