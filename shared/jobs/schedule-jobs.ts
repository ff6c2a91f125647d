// Jobs of the shared `schedules` queue: one run of an instance's snapshot schedule, put there by BullMQ's job
// scheduler (one job per interval, whatever the number of processes) and taken by an API process.
import { z } from "zod";
import { RESOURCE_ID } from "../schemas/common.ts";
import type { JobDefinition } from "./catalog.ts";

export const SCHEDULE_JOBS = {
  "snapshot.schedule.run": {
    queue: "schedules",
    payload: z.object({ instance_id: RESOURCE_ID }),
    result: z.object({ outcome: z.enum(["created", "failed", "skipped"]), snapshot_id: z.string().nullable() }),
    // A failed run is recorded in the schedule (last_error) and waits for the next interval: never retried late.
    attempts: 1,
    backoff: { type: "fixed", delayMs: 0 },
    timeoutMs: 900_000,
  },
} as const satisfies Record<string, JobDefinition>;
