// Snapshot schedules, exactly as the Hypeman SDK has them (resources/instances/snapshot-schedule.d.ts).
import { goDuration } from "../duration.ts";
import { z } from "../zod.ts";
import { TAGS, TIMESTAMP } from "./common.ts";

export const MIN_SCHEDULE_INTERVAL_MS = 60_000;
export const MAX_NAME_PREFIX = 47;

export const SNAPSHOT_SCHEDULE_RETENTION = z
  .object({
    max_count: z
      .number()
      .int()
      .min(0)
      .max(10_000)
      .optional()
      .openapi({ description: "Keep at most this many scheduled snapshots (0 disables count-based cleanup)" }),
    max_age: goDuration({ min: 1_000 })
      .optional()
      .openapi({ description: "Delete scheduled snapshots older than this (Go duration)" }),
  })
  .openapi("SnapshotScheduleRetention", { description: "Automatic cleanup policy for scheduled snapshots." });

export const SET_SNAPSHOT_SCHEDULE_BODY = z
  .object({
    interval: goDuration({ min: MIN_SCHEDULE_INTERVAL_MS }).openapi({
      description: "Snapshot interval (Go duration format, minimum 1m).",
      example: "24h",
    }),
    retention: SNAPSHOT_SCHEDULE_RETENTION.refine(
      (retention) => retention.max_count !== undefined || retention.max_age !== undefined,
      "at least one of max_count or max_age must be provided",
    ),
    metadata: TAGS.optional(),
    name_prefix: z
      .string()
      .max(MAX_NAME_PREFIX, `at most ${MAX_NAME_PREFIX} characters`)
      .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, "lowercase letters, digits and dashes; no dash at either end")
      .nullable()
      .optional()
      .openapi({ description: "Optional prefix for auto-generated scheduled snapshot names (max 47 chars)." }),
  })
  .openapi("SetSnapshotScheduleRequest");

export type SetSnapshotScheduleBody = z.infer<typeof SET_SNAPSHOT_SCHEDULE_BODY>;

export const SNAPSHOT_SCHEDULE_SCHEMA = z
  .object({
    instance_id: z.string(),
    interval: z.string().openapi({ description: "Snapshot interval (Go duration format)." }),
    retention: SNAPSHOT_SCHEDULE_RETENTION,
    metadata: z.record(z.string(), z.string()),
    name_prefix: z.string().nullable(),
    next_run_at: TIMESTAMP,
    last_run_at: TIMESTAMP.nullable(),
    last_snapshot_id: z.string().nullable(),
    last_error: z.string().nullable(),
    created_at: TIMESTAMP,
    updated_at: TIMESTAMP,
  })
  .openapi("SnapshotSchedule");

export type SnapshotSchedule = z.infer<typeof SNAPSHOT_SCHEDULE_SCHEMA>;
