// The BullMQ job schedulers behind snapshot schedules: one per instance on the `schedules` queue. BullMQ puts exactly
// one job per interval on the queue however many processes run, and never more than the next one after downtime.
import { createHash } from "node:crypto";
import { queueName } from "../../shared/jobs/catalog.ts";
import type { JobEnvelope } from "../../shared/jobs/producer.ts";
import { redisCall } from "../../shared/redis.ts";
import type { AppDeps } from "../deps.ts";

export const SCHEDULE_QUEUE = queueName("schedules");
export const schedulerId = (instanceId: string) => `snapshot-schedule:${instanceId}`;

/**
 * The run's phase within each interval, from 1 ms to interval - 1 ms: derived from the instance id, so it is the
 * same on every process and after every restart, and schedules of many instances do not all fire at once.
 */
export function scheduleOffset(instanceId: string, intervalMs: number): number {
  const hash = createHash("sha256").update(instanceId).digest().readUInt32BE(0);
  return 1 + (hash % (intervalMs - 1));
}

/** When the iteration a scheduler job stands for was due: BullMQ names them `repeat:<scheduler>:<millis>`. */
export function dueAt(jobId: string | undefined): number | undefined {
  const millis = Number(jobId?.split(":").at(-1));
  return Number.isFinite(millis) && millis > 0 ? millis : undefined;
}

/** Starts (or restarts, with a new cadence) the instance's scheduler; returns its next run. */
export async function upsertScheduler(deps: AppDeps, instanceId: string, intervalMs: number): Promise<string> {
  const queue = deps.jobs.queue(SCHEDULE_QUEUE);
  const template = {
    name: "snapshot.schedule.run",
    data: { payload: { instance_id: instanceId } } satisfies JobEnvelope,
    opts: { removeOnComplete: { count: 100 }, removeOnFail: { count: 100 } },
  };
  await redisCall(
    queue.upsertJobScheduler(
      schedulerId(instanceId),
      { every: intervalMs, offset: scheduleOffset(instanceId, intervalMs) },
      template,
    ),
    deps.redisCommandTimeoutMs,
    "schedules: upsert job scheduler",
  );
  return (await nextRun(deps, instanceId)) ?? new Date(Date.now() + intervalMs).toISOString();
}

export async function removeScheduler(deps: AppDeps, instanceId: string): Promise<void> {
  await redisCall(
    deps.jobs.queue(SCHEDULE_QUEUE).removeJobScheduler(schedulerId(instanceId)),
    deps.redisCommandTimeoutMs,
    "schedules: remove scheduler",
  );
}

/** The scheduler's next run as BullMQ has it, or undefined when it has none. */
export async function nextRun(deps: AppDeps, instanceId: string): Promise<string | undefined> {
  const scheduler = await redisCall(
    deps.jobs.queue(SCHEDULE_QUEUE).getJobScheduler(schedulerId(instanceId)),
    deps.redisCommandTimeoutMs,
    "schedules: read scheduler",
  );
  return scheduler?.next ? new Date(scheduler.next).toISOString() : undefined;
}
