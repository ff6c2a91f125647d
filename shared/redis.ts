// Redis connections: producers fail fast when Redis is down, workers wait for it to come back.
import { Redis, type RedisOptions } from "ioredis";
import { parseSentinelUrl } from "./config.ts";
import { unavailable } from "./errors.ts";

export type RedisRole = "producer" | "worker";

/** Options for a connection of the given role (BullMQ needs maxRetriesPerRequest null on blocking connections). */
export function redisOptions(role: RedisRole, commandTimeoutMs: number): RedisOptions {
  const common: RedisOptions = {
    connectTimeout: commandTimeoutMs,
    lazyConnect: false,
    retryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
  };
  if (role === "producer") {
    return { ...common, enableOfflineQueue: false, maxRetriesPerRequest: 1, commandTimeout: commandTimeoutMs };
  }
  return { ...common, maxRetriesPerRequest: null, enableReadyCheck: true };
}

/**
 * A connection of `role` to the Redis at `url`; a `redis+sentinel://` URL asks its sentinels for the primary, follows
 * it across a failover, and reconnects when a command meets a demoted primary (READONLY).
 */
export function connectRedis(url: string, role: RedisRole, commandTimeoutMs: number): Redis {
  if (!url.startsWith("redis+sentinel://")) return new Redis(url, redisOptions(role, commandTimeoutMs));
  const { sentinels, name, username, password } = parseSentinelUrl(url);
  return new Redis({
    ...redisOptions(role, commandTimeoutMs),
    sentinels,
    name,
    username,
    password,
    sentinelRetryStrategy: (attempt) => Math.min(attempt * 200, 2_000),
    // Subscribes to the sentinels: a +switch-master reconnects at once, so no write lands on a demoted primary.
    failoverDetector: true,
    reconnectOnError: (error) => error.message.startsWith("READONLY"),
  });
}

/** Resolves with the promise or rejects with `message` once `ms` have passed. */
export async function withDeadline<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new DeadlineError(message)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export class DeadlineError extends Error {
  override name = "DeadlineError";
}

/**
 * Awaits one Redis call for at most `ms`. An error or the deadline becomes a 503 `unavailable` naming `what`;
 * the abandoned call's late settlement is ignored.
 */
export async function redisCall<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  try {
    return await withDeadline(promise, ms, `${what}: redis did not answer`);
  } catch (error) {
    promise.catch(() => {});
    throw unavailable(`${what}: redis unavailable`, error);
  }
}

/** Closes a connection, waiting at most `ms` for QUIT before dropping it. */
export async function closeRedis(connection: Redis, ms = 1_000): Promise<void> {
  if (connection.status === "end") return;
  const ended = new Promise<void>((resolve) => connection.once("end", () => resolve()));
  try {
    await withDeadline(connection.quit(), ms, "redis quit");
  } catch {
    connection.disconnect();
  }
  await withDeadline(ended, ms, "redis end").catch(() => connection.disconnect());
}

/** Waits until the connection is ready, at most `ms`; resolves false if it is not (the caller carries on degraded). */
export async function waitForRedisReady(connection: Redis, ms: number): Promise<boolean> {
  if (connection.status === "ready") return true;
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(false), ms);
    const onReady = () => finish(true);
    function finish(ready: boolean) {
      clearTimeout(timer);
      connection.off("ready", onReady);
      resolve(ready);
    }
    connection.once("ready", onReady);
  });
}
