// This host's entry in the host directory: announced at start and heartbeated with its lease (shared/hosts.ts), over
// a connection of its own so that a busy job connection never delays a renewal. A clean stop releases the lease.
import {
  announceHost,
  HOST_HEARTBEAT_INTERVAL_MS,
  type HostRecord,
  isRetiredHost,
  releaseHostLease,
  renewHostLease,
} from "../../shared/hosts.ts";
import type { Logger } from "../../shared/logger.ts";
import type { QuarantinedEntry } from "../../shared/quarantine.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";

export interface HostPresence {
  stop(): Promise<void>;
}

export async function startHostPresence(options: {
  redisUrl: string;
  prefix: string;
  commandTimeoutMs: number;
  host: Omit<HostRecord, "last_seen_at">;
  /** Called once when a heartbeat finds this host retired (the process then stops). */
  onRetired?: () => void;
  /** Read again at each heartbeat: what this host holds in quarantine (shared/quarantine.ts). */
  quarantined?: () => Promise<QuarantinedEntry[]>;
  log: Logger;
}): Promise<HostPresence> {
  const { prefix, host, log } = options;
  const connection = connectRedis(options.redisUrl, "worker", options.commandTimeoutMs);
  connection.on("error", (error) => log.warn({ err: error.message }, "presence connection error"));
  let retired = false;
  const heartbeat = async () => {
    if (retired) return;
    try {
      // A host retired while it ran (it was thought dead) must not come back into the directory.
      if (await isRetiredHost(connection, prefix, host.id)) {
        retired = true;
        log.error({ hostId: host.id }, "this host was retired (DELETE /hosts/{id}): it no longer announces itself");
        options.onRetired?.();
        return;
      }
      const quarantined = await options.quarantined?.().catch(() => undefined);
      await announceHost(connection, prefix, { ...host, quarantined, last_seen_at: new Date().toISOString() });
      await renewHostLease(connection, prefix, host.id);
    } catch (error) {
      log.warn({ err: (error as Error).message }, "heartbeat failed");
    }
  };
  await heartbeat();
  const timer = setInterval(heartbeat, HOST_HEARTBEAT_INTERVAL_MS);
  return {
    async stop() {
      clearInterval(timer);
      await releaseHostLease(connection, prefix, host.id).catch((error: Error) =>
        log.warn({ err: error.message }, "releasing the presence lease failed (it runs out by itself)"),
      );
      await closeRedis(connection);
    },
  };
}
