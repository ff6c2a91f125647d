import { describe, expect, it } from "vitest";
import { testRedisUrl, uniquePrefix } from "../test/helpers/fixtures.ts";
import { LeaseLostError, LockTimeoutError, PROCESS_ID, withRedisLock } from "./locks.ts";
import { closeRedis, connectRedis } from "./redis.ts";

const redis = connectRedis(testRedisUrl(), "worker", 1_000);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe("withRedisLock", () => {
  it("takes over at once a lease whose holder's process has no heartbeat (it died, on any machine)", async () => {
    const key = `${uniquePrefix("lock")}:a`;
    // Same host name and pid as this process, but another process id: a sibling container's dead process.
    await redis.set(key, `${PROCESS_ID.replace(/-[0-9a-f]+$/, "-0dead0")}:x`, "PX", 300_000);
    const value = await withRedisLock(redis, key, { ttlMs: 10_000, waitMs: 1_000 }, async () => "ran");
    expect(value).toBe("ran");
    expect(await redis.exists(key)).toBe(0);
  });

  it("waits for a holder whose process keeps its heartbeat", async () => {
    const key = `${uniquePrefix("lock")}:b`;
    const holder = "other-host-1-abcdef:x";
    await redis.set(`${key}:alive:other-host-1-abcdef`, "1", "PX", 10_000); // its heartbeat, beside the lease
    await redis.set(key, holder, "PX", 300_000);
    await expect(withRedisLock(redis, key, { ttlMs: 10_000, waitMs: 300 }, async () => "ran")).rejects.toThrow(
      LockTimeoutError,
    );
    expect(await redis.get(key)).toBe(holder);
  });

  it("renews a lease whose work outlives its TTL: nobody else gets it meanwhile", async () => {
    const key = `${uniquePrefix("lock")}:c`;
    const order: string[] = [];
    const first = withRedisLock(redis, key, { ttlMs: 300, waitMs: 1_000 }, async (lease) => {
      order.push("first started");
      await sleep(1_200); // four TTLs
      await lease.assertHeld();
      order.push("first done");
    });
    await sleep(50);
    const second = withRedisLock(redis, key, { ttlMs: 300, waitMs: 5_000 }, async () => {
      order.push("second ran");
    });
    await Promise.all([first, second]);
    expect(order).toEqual(["first started", "first done", "second ran"]);
  });

  it("stops a holder that lost its lease before its destructive step", async () => {
    const key = `${uniquePrefix("lock")}:d`;
    let destroyed = false;
    const run = withRedisLock(redis, key, { ttlMs: 300, waitMs: 1_000 }, async (lease) => {
      await redis.set(key, "someone-else:y", "PX", 10_000); // its lease expired and another process took it
      await new Promise((resolve) => lease.signal.addEventListener("abort", resolve, { once: true }));
      await lease.assertHeld();
      destroyed = true;
    });
    await expect(run).rejects.toThrow(LeaseLostError);
    expect(destroyed).toBe(false);
    expect(await redis.get(key)).toBe("someone-else:y"); // and its release left the new holder alone
    await closeRedis(redis);
  });
});
