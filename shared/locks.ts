// A lock across processes (the capture and compression workers of one host), held in Redis with a token.
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";

const RELEASE_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const RETRY_MS = 50;

export class LockTimeoutError extends Error {
  override name = "LockTimeoutError";
}

/**
 * Runs `operation` while holding `key`. The lock expires after `ttlMs` even if its holder dies, so `ttlMs`
 * must exceed the longest critical section; waiting gives up after `waitMs`.
 */
export async function withRedisLock<T>(
  redis: Redis,
  key: string,
  options: { ttlMs: number; waitMs: number },
  operation: () => Promise<T>,
): Promise<T> {
  const token = randomBytes(12).toString("hex");
  const deadline = Date.now() + options.waitMs;
  while ((await redis.set(key, token, "PX", options.ttlMs, "NX")) !== "OK") {
    if (Date.now() > deadline) throw new LockTimeoutError(`could not take lock ${key} within ${options.waitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
  try {
    return await operation();
  } finally {
    await redis.eval(RELEASE_SCRIPT, 1, key, token).catch(() => {});
  }
}
