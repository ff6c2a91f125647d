// Clean shutdown on SIGINT/SIGTERM: run the process's stop routine once, exit non-zero if it overruns.
import type { Logger } from "./logger.ts";

const PARENT_CHECK_INTERVAL_MS = 1_000;

/**
 * Runs `stop` on SIGINT/SIGTERM, and also when `supervisorPid` is given and that process is gone
 * (a supervisor killed with SIGKILL cannot forward signals).
 */
export function onShutdownSignal(
  log: Logger,
  deadlineMs: number,
  stop: () => Promise<void>,
  supervisorPid?: number,
): void {
  let stopping = false;
  const handle = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    const timer = setTimeout(() => {
      log.error({ deadlineMs }, "shutdown deadline passed: exiting anyway");
      process.exit(1);
    }, deadlineMs);
    timer.unref();
    stop().then(
      () => {
        log.info("stopped");
        process.exit(0);
      },
      (error: unknown) => {
        log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", handle);
  process.on("SIGTERM", handle);
  if (supervisorPid) {
    const watchdog = setInterval(() => {
      if (process.ppid !== supervisorPid) {
        clearInterval(watchdog);
        log.warn({ supervisorPid }, "supervisor is gone");
        handle("SIGTERM");
      }
    }, PARENT_CHECK_INTERVAL_MS);
    watchdog.unref();
  }
}
