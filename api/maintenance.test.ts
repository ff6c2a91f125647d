import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventStreamKey } from "../shared/events/stream.ts";
import { createLogger } from "../shared/logger.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../shared/redis.ts";
import { openTestDatabase, type TestDatabase } from "../test/helpers/database.ts";
import { DEAD_REDIS_URL, testRedisUrl, uniquePrefix } from "../test/helpers/fixtures.ts";
import type { Db } from "./db/database.ts";
import { startMaintenance } from "./maintenance.ts";

const DAY = 86_400_000;
const retention = { processedEventsMs: DAY, deletedResourcesMs: DAY, webhookDeliveriesMs: DAY };
const log = createLogger("maintenance-test", "silent");
let database: TestDatabase;
let db: Db;

beforeAll(async () => {
  database = await openTestDatabase("maintenance");
  db = database.db;
});
afterAll(() => database.close());

const oldEvent = (id: string) => ({
  event_id: id,
  stream_id: "1-0",
  applied_at: new Date(Date.now() - 2 * DAY).toISOString(),
});

describe("maintenance pass", () => {
  it("trims the acknowledged stream and prunes old rows", async () => {
    const redis = connectRedis(testRedisUrl(), "producer", 1_000);
    await waitForRedisReady(redis, 5_000);
    const prefix = uniquePrefix("maintenance");
    const key = eventStreamKey(prefix);
    for (let index = 0; index < 5; index++) await redis.xadd(key, "*", "n", index);
    await redis.xgroup("CREATE", key, "read-model", "$"); // has read everything there is
    await db.insertInto("processed_events").values(oldEvent("a")).execute();
    const maintenance = startMaintenance({ db, retention, redis, prefix, streamMaxLength: 1_000, log });
    const report = await maintenance.runOnce();
    expect(report.trimmed?.[key]).toBe(5);
    expect(report.pruned?.processed_events).toBe(1);
    await maintenance.stop();
    await closeRedis(redis);
  });

  it("still prunes while Redis is down", async () => {
    const redis = connectRedis(DEAD_REDIS_URL, "producer", 200);
    redis.on("error", () => {});
    await db.insertInto("processed_events").values(oldEvent("b")).execute();
    const maintenance = startMaintenance({ db, retention, redis, prefix: "x", streamMaxLength: 1_000, log });
    const report = await maintenance.runOnce();
    expect(report.trimmed).toBeUndefined();
    expect(report.pruned?.processed_events).toBe(1);
    await maintenance.stop();
    redis.disconnect();
  });
});
