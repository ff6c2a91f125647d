// What every service process does first: read the config, name its logger, insist on Redis.
import type { Redis } from "ioredis";
import { type Config, loadConfigOrExit } from "./config.ts";
import { enableCrashPoints } from "./crash-points.ts";
import { HostIdError, resolveHostId } from "./host-id.ts";
import { isRetiredHost } from "./hosts.ts";
import { createLogger, type Logger } from "./logger.ts";
import { connectRedis } from "./redis.ts";

export interface BootedProcess {
  config: Config & { REDIS_URL: string };
  log: Logger;
  /** Set for processes that work on this host's VMs and payloads. */
  hostId?: string;
  /** A new worker-role Redis connection whose errors are logged (each blocking consumer needs its own). */
  connectRedis(label?: string): Redis;
}

export function bootProcess(name: string, options: { perHost?: boolean } = {}): BootedProcess {
  const config = loadConfigOrExit();
  enableCrashPoints(config.CRASH_POINTS_FILE);
  const hostId = options.perHost ? hostIdOrExit(name, config) : undefined;
  const log = createLogger(name, config.LOG_LEVEL).child(hostId ? { hostId } : {});
  const redisUrl = config.REDIS_URL;
  if (!redisUrl) {
    log.fatal("REDIS_URL is not set: start the whole service with `npm start`, which runs a private Redis");
    process.exit(78);
  }
  return {
    config: { ...config, REDIS_URL: redisUrl },
    log,
    hostId,
    connectRedis(label = "redis") {
      const connection = connectRedis(redisUrl, "worker", config.REDIS_COMMAND_TIMEOUT_MS);
      connection.on("error", (error) => log.warn({ err: error.message }, `${label} connection error`));
      return connection;
    },
  };
}

/** This host's id; a lost one stops the process as a config error (the supervisor then stops, not restarts). */
function hostIdOrExit(name: string, config: Config): string {
  try {
    return resolveHostId(config.HOST_ID, config.DATA_DIR);
  } catch (error) {
    if (!(error instanceof HostIdError)) throw error;
    createLogger(name, config.LOG_LEVEL).fatal(error.message);
    process.exit(78);
  }
}

/**
 * A host retired with DELETE /hosts/{id} was given up for dead and its snapshots went to other hosts: its workers
 * must not come back under its id (they would announce stale records and upload over what the adopters own). Exits
 * when Redis says it is retired; a Redis that does not answer yet lets it start (its presence checks again).
 */
export async function exitIfRetired(redis: Redis, prefix: string, hostId: string, log: Logger): Promise<void> {
  if (!(await isRetiredHost(redis, prefix, hostId).catch(() => false))) return;
  log.fatal({ hostId }, "this host was retired (DELETE /hosts/{id}): its workers do not start under its id again");
  process.exit(1);
}
