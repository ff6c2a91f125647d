// The API's event-loop delay (perf_hooks.monitorEventLoopDelay): a stalled loop delays every request at once, so
// it is logged every minute, as a warning when its p99 passes STALL_WARN_MS.
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Logger } from "../shared/logger.ts";

const REPORT_EVERY_MS = 60_000;
const STALL_WARN_MS = 50;

export interface EventLoopMonitor {
  stop(): void;
}

export function startEventLoopMonitor(log: Logger): EventLoopMonitor {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  const timer = setInterval(() => {
    const delay = {
      p50_ms: histogram.percentile(50) / 1e6,
      p99_ms: histogram.percentile(99) / 1e6,
      max_ms: histogram.max / 1e6,
    };
    histogram.reset();
    if (delay.p99_ms > STALL_WARN_MS) log.warn({ eventLoopDelay: delay }, "event loop stalled");
    else log.debug({ eventLoopDelay: delay }, "event loop delay");
  }, REPORT_EVERY_MS).unref();
  return {
    stop() {
      clearInterval(timer);
      histogram.disable();
    },
  };
}
