// This host's entry in the host directory: announced at start and heartbeated over a connection named after the
// host, so the API sees the host offline the moment this process (and with it the connection) is gone.
import { Redis } from "ioredis";
import { keepFleetSecret } from "../../shared/fleet-secret.ts";
import {
  announceHost,
  HOST_HEARTBEAT_INTERVAL_MS,
  type HostRecord,
  hostPresenceConnectionName,
} from "../../shared/hosts.ts";
import type { Logger } from "../../shared/logger.ts";
import type { QuarantinedEntry } from "../../shared/quarantine.ts";
import { closeRedis, redisOptions } from "../../shared/redis.ts";

export interface HostPresence {
  stop(): Promise<void>;
}

export async function startHostPresence(options: {
  redisUrl: string;
  prefix: string;
  commandTimeoutMs: number;
  host: Omit<HostRecord, "last_seen_at">;
  /** Written back with each heartbeat unless configured (see shared/fleet-secret.ts). */
  sharedFleetSecret?: string;
  /** Read again at each heartbeat: what this host holds in quarantine (shared/quarantine.ts). */
  quarantined?: () => Promise<QuarantinedEntry[]>;
  log: Logger;
}): Promise<HostPresence> {
  const { prefix, host, log } = options;
  const connection = new Redis(options.redisUrl, {
    ...redisOptions("worker", options.commandTimeoutMs),
    connectionName: hostPresenceConnectionName(prefix, host.id),
  });
  connection.on("error", (error) => log.warn({ err: error.message }, "presence connection error"));
  const heartbeat = async () => {
    try {
      if (options.sharedFleetSecret) await keepFleetSecret(connection, prefix, options.sharedFleetSecret);
      const quarantined = await options.quarantined?.().catch(() => undefined);
      await announceHost(connection, prefix, { ...host, quarantined, last_seen_at: new Date().toISOString() });
    } catch (error) {
      log.warn({ err: (error as Error).message }, "heartbeat failed");
    }
  };
  await heartbeat();
  const timer = setInterval(heartbeat, HOST_HEARTBEAT_INTERVAL_MS);
  return {
    async stop() {
      clearInterval(timer);
      await closeRedis(connection);
    },
  };
}
