// What only Redis holds is derived from the database and rebuilt from it, at start and every RECONCILE_INTERVAL_MS:
// snapshot schedules' job schedulers, webhook endpoints' mirrors, pending deliveries' jobs and the retired hosts. A pass while Redis is
// down just fails (logged) and the next one tries again.
import type { Logger } from "../shared/logger.ts";
import type { AppDeps } from "./deps.ts";
import { mirrorRetirements } from "./host-retirement.ts";
import { reconcileSchedules } from "./schedules/reconcile.ts";
import { requeuePendingDeliveries } from "./webhooks/requeue.ts";

export interface RedisRebuildOptions {
  intervalMs: number;
  schedules: boolean;
  webhookDeliveries: boolean;
}

export interface RedisRebuild {
  /** One pass now (start-up, tests). */
  runOnce(): Promise<void>;
  stop(): Promise<void>;
}

export function startRedisRebuild(deps: AppDeps, options: RedisRebuildOptions): RedisRebuild {
  const log: Logger = deps.log.child({ component: "redis-rebuild" });
  const tasks: Array<[string, () => Promise<unknown>]> = [["retired hosts", () => mirrorRetirements(deps)]];
  if (options.schedules) tasks.push(["schedules", () => reconcileSchedules(deps, log)]);
  if (options.webhookDeliveries) {
    tasks.push(["webhook endpoint mirrors", () => deps.webhookEndpoints.syncMirror()]);
    tasks.push(["webhook deliveries", () => requeuePendingDeliveries(deps, log)]);
  }

  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const runOnce = async () => {
    for (const [what, task] of tasks) {
      if (stopped) return;
      try {
        await task();
      } catch (error) {
        log.warn({ what, err: (error as Error).message }, "rebuilding redis state failed; next pass retries");
      }
    }
  };
  const loop = () => {
    running = runOnce().finally(() => {
      if (!stopped) timer = setTimeout(loop, options.intervalMs);
    });
  };
  loop();
  return {
    runOnce,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
