// A lock across processes (the capture and compression workers of one host), held in Redis with a token that names
// its holder (machine and pid): a lock whose holder died on this machine (kill -9, a crash point) is taken over at
// once instead of after its TTL.
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Redis } from "ioredis";

const RELEASE_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const TAKE_OVER_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) else return false end`;
const RETRY_MS = 50;
const MACHINE = hostname();

export class LockTimeoutError extends Error {
  override name = "LockTimeoutError";
}

/**
 * Runs `operation` while holding `key`. The lock expires after `ttlMs` even if its holder dies on another machine,
 * so `ttlMs` must exceed the longest critical section; waiting gives up after `waitMs`.
 */
export async function withRedisLock<T>(
  redis: Redis,
  key: string,
  options: { ttlMs: number; waitMs: number },
  operation: () => Promise<T>,
): Promise<T> {
  const token = `${MACHINE}:${process.pid}:${randomBytes(8).toString("hex")}`;
  const deadline = Date.now() + options.waitMs;
  while ((await redis.set(key, token, "PX", options.ttlMs, "NX")) !== "OK") {
    const holder = await redis.get(key);
    if (holder && holderIsDead(holder)) {
      const taken = await redis.eval(TAKE_OVER_SCRIPT, 1, key, holder, token, String(options.ttlMs));
      if (taken) break;
    }
    if (Date.now() > deadline) throw new LockTimeoutError(`could not take lock ${key} within ${options.waitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
  try {
    return await operation();
  } finally {
    await redis.eval(RELEASE_SCRIPT, 1, key, token).catch(() => {});
  }
}

/** A holder on this machine whose process no longer exists. Holders elsewhere are trusted until their TTL. */
function holderIsDead(token: string): boolean {
  const [machine, pid] = token.split(":");
  if (machine !== MACHINE || !pid || !/^\d+$/.test(pid)) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ESRCH";
  }
}
