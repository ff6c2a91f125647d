// Takes snapshot-schedule runs off the `schedules` queue in this API process (it owns the read model they need).
import type { Redis } from "ioredis";
import { startJobWorker } from "../../shared/jobs/worker.ts";
import type { AppDeps } from "../deps.ts";
import { runSchedule } from "./run.ts";
import { SCHEDULE_QUEUE } from "./scheduler.ts";

const CONCURRENCY = 4;

export function startScheduleWorker(deps: AppDeps, connection: Redis) {
  return startJobWorker({
    queue: SCHEDULE_QUEUE,
    prefix: deps.redisPrefix,
    connection,
    concurrency: CONCURRENCY,
    log: deps.log,
    handlers: {
      "snapshot.schedule.run": ({ instance_id }, { job, log }) => runSchedule(deps, instance_id, job.id, log),
    },
  });
}
