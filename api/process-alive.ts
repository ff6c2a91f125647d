// Every API process keeps a heartbeat in Redis (<prefix>:api:alive:<PROCESS_ID>, shared/locks.ts) while it runs, so
// another replica can tell whether the process that claimed an Idempotency-Key is still there to answer it.
import type { Redis } from "ioredis";
import { HEARTBEAT_TTL_MS, processAlive, startProcessHeartbeat } from "../shared/locks.ts";

const scope = (prefix: string) => `${prefix}:api`;

export const startApiHeartbeat = (redis: Redis, prefix: string) => startProcessHeartbeat(redis, scope(prefix));

/**
 * Whether API process `processId` still runs. A heartbeat missing once is asked again a beat later (Redis that just
 * lost its data has every heartbeat back within a beat); a Redis that does not answer counts as alive: in doubt, the
 * claim stays with its owner.
 */
export async function apiProcessAlive(
  deps: { redis: Redis; redisPrefix: string },
  processId: string,
  recheckMs = HEARTBEAT_TTL_MS / 2,
): Promise<boolean> {
  try {
    if (await processAlive(deps.redis, scope(deps.redisPrefix), processId)) return true;
    await new Promise((resolve) => setTimeout(resolve, recheckMs));
    return await processAlive(deps.redis, scope(deps.redisPrefix), processId);
  } catch {
    return true;
  }
}
