// Redis losing one test's data (its prefix) as FLUSHALL would, without touching the other tests on the shared server.
import type { Redis } from "ioredis";

export async function forgetPrefix(redis: Redis, prefix: string): Promise<number> {
  let cursor = "0";
  let removed = 0;
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 500);
    cursor = next;
    if (keys.length > 0) removed += await redis.del(...keys);
  } while (cursor !== "0");
  return removed;
}
