// Keeps what the API process owns bounded: trims the event and outcome streams to what their consumer groups
// have acknowledged (plus a hard length cap), on an interval; each pass is logged only when it did something.
import type { Redis } from "ioredis";
import { eventStreamKey } from "../shared/events/stream.ts";
import { trimStream } from "../shared/events/trim.ts";
import type { Logger } from "../shared/logger.ts";
import { outcomeStreamKey } from "../shared/webhooks/mirror.ts";

export const MAINTENANCE_INTERVAL_MS = 60_000;

export interface MaintenanceOptions {
  redis: Redis;
  prefix: string;
  /** EVENT_STREAM_MAX_LENGTH: the cap for a stream whose slowest group is stuck. */
  streamMaxLength: number;
  log: Logger;
  intervalMs?: number;
}

export interface MaintenanceReport {
  /** Stream entries removed, by stream key. */
  trimmed: Record<string, number>;
}

export interface Maintenance {
  /** One pass now (also what the interval runs). */
  runOnce(): Promise<MaintenanceReport>;
  stop(): Promise<void>;
}

export function startMaintenance(options: MaintenanceOptions): Maintenance {
  const log = options.log.child({ component: "maintenance" });
  const runOnce = async (): Promise<MaintenanceReport> => {
    const trimmed: Record<string, number> = {};
    for (const key of [eventStreamKey(options.prefix), outcomeStreamKey(options.prefix)]) {
      trimmed[key] = (await trimStream(options.redis, key, options.streamMaxLength, log)).removed;
    }
    return { trimmed };
  };

  let running: Promise<unknown> = Promise.resolve();
  const tick = () => {
    running = runOnce()
      .then((report) => {
        if (Object.values(report.trimmed).some((count) => count > 0)) log.info(report, "maintenance pass");
      })
      .catch((error: Error) => log.warn({ err: error.message }, "maintenance pass failed; next one retries"));
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
