// A lease across processes (the capture and compression workers of one host, or of several), held in Redis: renewed
// while its work runs, fenced (a holder checks it still holds it before each destructive step, and its signal
// aborts once it is lost), and taken over at once when its holder's process stops its heartbeat (kill -9, a crash),
// whatever machine or pid namespace that process lived in.
import { randomBytes } from "node:crypto";
import { hostname } from "node:os";
import type { Redis } from "ioredis";

const RELEASE_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const RENEW_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
const TAKE_OVER_SCRIPT = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) else return false end`;
const RETRY_MS = 50;
/** A process that has not refreshed its heartbeat for this long is dead: its leases are taken over. */
export const HEARTBEAT_TTL_MS = 5_000;
const HEARTBEAT_EVERY_MS = 1_500;

/** This process, as lease holders are named: unique even where host names and pids repeat (two containers). */
export const PROCESS_ID = `${hostname()}-${process.pid}-${randomBytes(6).toString("hex")}`;
/** Beside the lease's own key, so it stays under the deployment's prefix (and a prefix-scoped Redis user's reach). */
const heartbeatKey = (leaseKey: string, processId: string) => `${leaseKey}:alive:${processId}`;

export class LockTimeoutError extends Error {
  override name = "LockTimeoutError";
}

export class LeaseLostError extends Error {
  override name = "LeaseLostError";
}

export interface Lease {
  /** Aborted once the lease is lost (a renewal found another holder, or none succeeded for a TTL). */
  readonly signal: AbortSignal;
  /** The fencing check before a destructive step: throws LeaseLostError unless Redis still names this holder. */
  assertHeld(): Promise<void>;
}

/**
 * Runs `operation` while holding `key`, renewing it every third of `ttlMs`; waiting gives up after `waitMs`. A lease
 * whose holder's process died (no heartbeat) is taken over at once; a live holder's only after it lets go.
 */
export async function withRedisLock<T>(
  redis: Redis,
  key: string,
  options: { ttlMs: number; waitMs: number },
  operation: (lease: Lease) => Promise<T>,
): Promise<T> {
  const stopHeartbeat = startHeartbeat(redis, key);
  try {
    const token = `${PROCESS_ID}:${randomBytes(8).toString("hex")}`;
    await acquire(redis, key, token, options);
    const lease = holdLease(redis, key, token, options.ttlMs);
    try {
      return await operation(lease);
    } finally {
      lease.stop();
      await redis.eval(RELEASE_SCRIPT, 1, key, token).catch(() => {});
    }
  } finally {
    stopHeartbeat();
  }
}

async function acquire(redis: Redis, key: string, token: string, options: { ttlMs: number; waitMs: number }) {
  const deadline = Date.now() + options.waitMs;
  while ((await redis.set(key, token, "PX", options.ttlMs, "NX")) !== "OK") {
    const holder = await redis.get(key);
    if (holder && (await holderIsDead(redis, key, holder))) {
      const taken = await redis.eval(TAKE_OVER_SCRIPT, 1, key, holder, token, String(options.ttlMs));
      if (taken) return;
    }
    if (Date.now() > deadline) throw new LockTimeoutError(`could not take lock ${key} within ${options.waitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

function holdLease(redis: Redis, key: string, token: string, ttlMs: number): Lease & { stop(): void } {
  const controller = new AbortController();
  let renewedAt = Date.now();
  const lose = (why: string) => {
    if (!controller.signal.aborted) controller.abort(new LeaseLostError(why));
  };
  const renew = async () => {
    try {
      const renewed = await redis.eval(RENEW_SCRIPT, 1, key, token, String(ttlMs));
      if (Number(renewed) === 1) renewedAt = Date.now();
      else lose(`lease ${key} is held by another process now`);
    } catch {
      if (Date.now() - renewedAt >= ttlMs) lose(`lease ${key} could not be renewed for ${ttlMs} ms`);
    }
  };
  const timer = setInterval(() => void renew(), Math.max(10, Math.floor(ttlMs / 3)));
  timer.unref();
  return {
    signal: controller.signal,
    async assertHeld() {
      if (controller.signal.aborted) throw controller.signal.reason;
      if ((await redis.get(key)) !== token) {
        lose(`lease ${key} is held by another process now`);
        throw controller.signal.reason;
      }
    },
    stop: () => clearInterval(timer),
  };
}

/** A holder whose process has no heartbeat (tokens name their process: `<process id>:<random>`). */
async function holderIsDead(redis: Redis, key: string, token: string): Promise<boolean> {
  const processId = token.slice(0, token.lastIndexOf(":"));
  if (processId === PROCESS_ID) return false;
  return (await redis.exists(heartbeatKey(key, processId))) === 0;
}

/**
 * This process's heartbeat under `scope` (e.g. `<prefix>:api`) until the returned stop is called: others ask
 * `processAlive` whether a process that claimed something there still runs.
 */
export const startProcessHeartbeat = (redis: Redis, scope: string): (() => void) => startHeartbeat(redis, scope);

/** Whether `processId` keeps its heartbeat under `scope` (startProcessHeartbeat); throws when Redis does not answer. */
export async function processAlive(redis: Redis, scope: string, processId: string): Promise<boolean> {
  return (await redis.exists(heartbeatKey(scope, processId))) === 1;
}

/** Per connection and lease key: this process's heartbeat runs while it holds or waits for that lease. */
const heartbeats = new Map<Redis, Map<string, { users: number; timer: NodeJS.Timeout }>>();

function startHeartbeat(redis: Redis, key: string): () => void {
  const ofConnection = heartbeats.get(redis) ?? new Map<string, { users: number; timer: NodeJS.Timeout }>();
  heartbeats.set(redis, ofConnection);
  const alive = heartbeatKey(key, PROCESS_ID);
  let entry = ofConnection.get(key);
  if (!entry) {
    const beat = () => void redis.set(alive, "1", "PX", HEARTBEAT_TTL_MS).catch(() => {});
    beat();
    const timer = setInterval(beat, HEARTBEAT_EVERY_MS);
    timer.unref();
    entry = { users: 0, timer };
    ofConnection.set(key, entry);
  }
  entry.users++;
  return () => {
    if (--entry.users > 0) return;
    clearInterval(entry.timer);
    ofConnection.delete(key);
    if (ofConnection.size === 0) heartbeats.delete(redis);
    void redis.del(alive).catch(() => {});
  };
}
