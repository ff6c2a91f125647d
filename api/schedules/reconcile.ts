// Snapshot schedules live in the database; their BullMQ job schedulers are derived from the rows and rebuilt from
// them (at start and periodically), so a Redis that lost its data fires them again, and a stray scheduler goes.
import type { Logger } from "../../shared/logger.ts";
import { redisCall } from "../../shared/redis.ts";
import type { AppDeps } from "../deps.ts";
import { nextRun, removeScheduler, SCHEDULE_QUEUE, schedulerId, upsertScheduler } from "./scheduler.ts";
import { recordRun } from "./store.ts";

const SCHEDULER_PREFIX = schedulerId("");

export interface ScheduleReconciliation {
  restored: number;
  removed: number;
}

/** Upserts the scheduler of every schedule row whose scheduler is missing; removes schedulers with no row. */
export async function reconcileSchedules(deps: AppDeps, log: Logger): Promise<ScheduleReconciliation> {
  const rows = await deps.db.selectFrom("snapshot_schedules").selectAll().execute();
  const wanted = new Set(rows.map((row) => row.instance_id));
  let restored = 0;
  for (const row of rows) {
    if ((await nextRun(deps, row.instance_id)) !== undefined) continue;
    const next = await upsertScheduler(deps, row.instance_id, row.interval_ms);
    const { last_run_at, last_snapshot_id, last_error } = row;
    await recordRun(deps.db, row.instance_id, { last_run_at, last_snapshot_id, last_error, next_run_at: next });
    restored++;
  }
  const schedulers = await redisCall(
    deps.jobs.queue(SCHEDULE_QUEUE).getJobSchedulers(0, -1),
    deps.redisCommandTimeoutMs,
    "schedules: list schedulers",
  );
  let removed = 0;
  for (const scheduler of schedulers) {
    const instanceId = scheduler.key.startsWith(SCHEDULER_PREFIX) ? scheduler.key.slice(SCHEDULER_PREFIX.length) : "";
    if (!instanceId || wanted.has(instanceId)) continue;
    await removeScheduler(deps, instanceId);
    removed++;
  }
  if (restored + removed > 0) log.warn({ restored, removed }, "snapshot schedulers rebuilt from the database");
  return { restored, removed };
}
