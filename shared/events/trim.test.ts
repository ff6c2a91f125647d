import type { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { testRedisUrl, uniquePrefix } from "../../test/helpers/fixtures.ts";
import { createLogger } from "../logger.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../redis.ts";
import { comparePositions, trimmedThrough, trimStream } from "./trim.ts";

const ENTRIES = 1_000;
const log = createLogger("trim-test", "silent");
let redis: Redis;

beforeAll(async () => {
  redis = connectRedis(testRedisUrl(), "worker", 1_000);
  await waitForRedisReady(redis, 5_000);
});
afterAll(() => closeRedis(redis));

async function streamWith(count: number): Promise<{ key: string; ids: string[] }> {
  const key = `${uniquePrefix("trim")}:events`;
  const ids: string[] = [];
  for (let index = 0; index < count; index += 100) {
    const pipeline = redis.pipeline();
    for (let offset = index; offset < Math.min(count, index + 100); offset++) pipeline.xadd(key, "*", "n", offset);
    for (const [, id] of (await pipeline.exec())!) ids.push(id as string);
  }
  return { key, ids };
}

/** Reads `count` entries as `group` and acknowledges the first `acknowledge` of them. */
async function consume(key: string, group: string, count: number, acknowledge: number): Promise<void> {
  await redis.xgroup("CREATE", key, group, "0");
  const reply = (await redis.xreadgroup("GROUP", group, "c", "COUNT", count, "STREAMS", key, ">")) as Array<
    [string, Array<[string, string[]]>]
  >;
  const read = reply[0]![1].map(([id]) => id);
  if (acknowledge > 0) await redis.xack(key, group, ...read.slice(0, acknowledge));
}

const first = async (key: string) => (await redis.xrange(key, "-", "+", "COUNT", 1))[0]![0];

describe("trimStream", () => {
  it("keeps everything from the oldest entry a group has not acknowledged", async () => {
    const { key, ids } = await streamWith(ENTRIES);
    await consume(key, "fast", ENTRIES, ENTRIES);
    await consume(key, "slow", 600, 450); // 450 acknowledged, 150 pending
    const outcome = await trimStream(redis, key, 1_000_000, log);
    expect(outcome.oldestNeeded).toBe(ids[450]);
    expect(outcome.removed).toBeGreaterThan(0);
    expect(comparePositions(await first(key), ids[450]!)).toBeLessThanOrEqual(0);
    expect(await redis.xlen(key)).toBe(ENTRIES - outcome.removed);
    expect(outcome.cutGroups).toEqual([]);
  });

  it("keeps what a group has not been delivered yet", async () => {
    const { key, ids } = await streamWith(ENTRIES);
    await consume(key, "reader", 700, 700);
    const outcome = await trimStream(redis, key, 1_000_000, log);
    expect(comparePositions(outcome.oldestNeeded!, ids[699]!)).toBeGreaterThan(0);
    expect(comparePositions(outcome.oldestNeeded!, ids[700]!)).toBeLessThanOrEqual(0);
    expect(comparePositions(await first(key), ids[700]!)).toBeLessThanOrEqual(0);
    expect(outcome.removed).toBeGreaterThanOrEqual(600);
  });

  it("trims nothing a group with nothing read still needs, and only caps a stream without groups", async () => {
    const { key } = await streamWith(ENTRIES);
    await redis.xgroup("CREATE", key, "idle", "0");
    expect((await trimStream(redis, key, 1_000_000, log)).removed).toBe(0);
    const bare = await streamWith(ENTRIES);
    expect((await trimStream(redis, bare.key, 1_000_000, log)).removed).toBe(0);
    expect((await trimStream(redis, "no-such-stream", 10, log)).removed).toBe(0);
  });

  it("caps the length for a stuck group and says which group lost unacknowledged entries", async () => {
    const { key, ids } = await streamWith(ENTRIES);
    await consume(key, "stuck", 10, 0);
    await consume(key, "done", ENTRIES, ENTRIES);
    const outcome = await trimStream(redis, key, 300, log);
    expect(outcome.cutGroups).toEqual(["stuck"]);
    const length = await redis.xlen(key);
    expect(length).toBe(300);
    expect(await trimmedThrough(redis, key)).toBe(ids[ENTRIES - 301]);
  });
});
