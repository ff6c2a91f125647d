// Keeps what the API process owns bounded, on an interval: trims the event and outcome streams to what their
// consumer groups have acknowledged (plus a hard length cap) and prunes old rows from the read model. Each half runs
// whatever the other's fate (SQLite does not need Redis); a pass is logged only when it did something.
import type { Redis } from "ioredis";
import { eventStreamKey } from "../shared/events/stream.ts";
import { trimStream } from "../shared/events/trim.ts";
import type { Logger } from "../shared/logger.ts";
import { outcomeStreamKey } from "../shared/webhooks/mirror.ts";
import type { Db } from "./db/database.ts";
import { type PruneReport, pruneByAge, type RetentionPolicy } from "./retention.ts";

export const MAINTENANCE_INTERVAL_MS = 60_000;

export interface MaintenanceOptions {
  db: Db;
  retention: RetentionPolicy;
  redis: Redis;
  prefix: string;
  /** EVENT_STREAM_MAX_LENGTH: the cap for a stream whose slowest group is stuck. */
  streamMaxLength: number;
  log: Logger;
  intervalMs?: number;
}

export interface MaintenanceReport {
  /** Stream entries removed, by stream key. */
  trimmed?: Record<string, number>;
  /** Rows deleted, by table. */
  pruned?: PruneReport;
}

export interface Maintenance {
  /** One pass now (also what the interval runs). */
  runOnce(): Promise<MaintenanceReport>;
  stop(): Promise<void>;
}

export function startMaintenance(options: MaintenanceOptions): Maintenance {
  const log = options.log.child({ component: "maintenance" });
  const trim = async () => {
    const trimmed: Record<string, number> = {};
    for (const key of [eventStreamKey(options.prefix), outcomeStreamKey(options.prefix)]) {
      trimmed[key] = (await trimStream(options.redis, key, options.streamMaxLength, log)).removed;
    }
    return trimmed;
  };
  const runOnce = async (): Promise<MaintenanceReport> => {
    const [trimmed, pruned] = await Promise.allSettled([trim(), pruneByAge(options.db, options.retention)]);
    for (const failed of [trimmed, pruned]) {
      if (failed.status === "rejected") log.warn({ err: (failed.reason as Error).message }, "maintenance step failed");
    }
    return {
      trimmed: trimmed.status === "fulfilled" ? trimmed.value : undefined,
      pruned: pruned.status === "fulfilled" ? pruned.value : undefined,
    };
  };
  const didSomething = (report: MaintenanceReport) =>
    [...Object.values(report.trimmed ?? {}), ...Object.values(report.pruned ?? {})].some((count) => count > 0);

  let running: Promise<unknown> = Promise.resolve();
  const tick = () => {
    running = runOnce().then((report) => {
      if (didSomething(report)) log.info(report, "maintenance pass");
    });
  };
  const timer = setInterval(tick, options.intervalMs ?? MAINTENANCE_INTERVAL_MS);
  timer.unref();
  return {
    runOnce,
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
