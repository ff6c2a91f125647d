import { spawnSync } from "node:child_process";
import { hostname } from "node:os";
import { describe, expect, it } from "vitest";
import { testRedisUrl, uniquePrefix } from "../test/helpers/fixtures.ts";
import { LockTimeoutError, withRedisLock } from "./locks.ts";
import { closeRedis, connectRedis } from "./redis.ts";

const redis = connectRedis(testRedisUrl(), "worker", 1_000);

/** The pid of a process that has exited (a node that ran `true`). */
const deadPid = () => spawnSync("true").pid!;

describe("withRedisLock", () => {
  it("takes over at once a lock whose holder died on this machine", async () => {
    const key = `${uniquePrefix("lock")}:a`;
    await redis.set(key, `${hostname()}:${deadPid()}:x`, "PX", 300_000);
    const value = await withRedisLock(redis, key, { ttlMs: 10_000, waitMs: 1_000 }, async () => "ran");
    expect(value).toBe("ran");
    expect(await redis.exists(key)).toBe(0);
  });

  it("waits for a live holder, and for holders on other machines", async () => {
    for (const holder of [`${hostname()}:${process.pid}:x`, `elsewhere:${deadPid()}:x`]) {
      const key = `${uniquePrefix("lock")}:b`;
      await redis.set(key, holder, "PX", 300_000);
      await expect(withRedisLock(redis, key, { ttlMs: 10_000, waitMs: 300 }, async () => "ran")).rejects.toThrow(
        LockTimeoutError,
      );
      expect(await redis.get(key)).toBe(holder);
    }
    await closeRedis(redis);
  });
});
