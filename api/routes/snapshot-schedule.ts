// GET/PUT/DELETE /instances/{id}/snapshot-schedule: periodic snapshots with retention, on BullMQ job schedulers.
import { createRoute } from "@hono/zod-openapi";
import { parseGoDuration } from "../../shared/duration.ts";
import { notFound } from "../../shared/errors.ts";
import { newId } from "../../shared/ids.ts";
import { SET_SNAPSHOT_SCHEDULE_BODY, SNAPSHOT_SCHEDULE_SCHEMA } from "../../shared/schemas/snapshot-schedule.ts";
import type { App, AppDeps } from "../deps.ts";
import { BEARER_SECURITY, errorResponses, jsonResponse } from "../openapi.ts";
import { nextRun, removeScheduler, upsertScheduler } from "../schedules/scheduler.ts";
import { deleteSchedule, findSchedule, saveSchedule, toSchedule } from "../schedules/store.ts";
import { requireInstance } from "./instances.ts";
import { INSTANCE_PATH } from "./params.ts";

const PATH = "/instances/{id}/snapshot-schedule";

export const getScheduleRoute = createRoute({
  method: "get",
  path: PATH,
  summary: "Get the snapshot schedule of an instance",
  tags: ["Snapshot schedules"],
  security: BEARER_SECURITY,
  request: { params: INSTANCE_PATH },
  responses: { 200: jsonResponse(SNAPSHOT_SCHEDULE_SCHEMA, "The schedule"), ...errorResponses(404) },
});

export const putScheduleRoute = createRoute({
  method: "put",
  path: PATH,
  summary: "Create or update the snapshot schedule of an instance",
  description:
    "Each run takes a Standby snapshot of a Running or Standby instance, a Stopped one of a Stopped instance, " +
    "through the same path as POST /instances/{id}/snapshots, then deletes this schedule's own snapshots beyond " +
    "retention, oldest first. Runs come from a BullMQ job scheduler: one per interval whatever the number of " +
    "processes, none made up after downtime, at a phase derived from the instance id. Changing only retention, " +
    "metadata or name_prefix keeps the next run; changing interval starts a new cadence.",
  tags: ["Snapshot schedules"],
  security: BEARER_SECURITY,
  request: {
    params: INSTANCE_PATH,
    body: { content: { "application/json": { schema: SET_SNAPSHOT_SCHEDULE_BODY } }, required: true },
  },
  responses: { 200: jsonResponse(SNAPSHOT_SCHEDULE_SCHEMA, "The schedule"), ...errorResponses(400, 404) },
});

export const deleteScheduleRoute = createRoute({
  method: "delete",
  path: PATH,
  summary: "Delete the snapshot schedule of an instance (its snapshots stay)",
  tags: ["Snapshot schedules"],
  security: BEARER_SECURITY,
  request: { params: INSTANCE_PATH },
  responses: { 204: { description: "Deleted" }, ...errorResponses(404) },
});

export function registerSnapshotScheduleRoutes(app: App, deps: AppDeps): void {
  app.openapi(getScheduleRoute, async (c) => {
    const instance = await requireInstance(deps, c.req.valid("param").id);
    const row = await findSchedule(deps.db, instance.id);
    if (!row) throw notFound("snapshot schedule of instance", instance.name);
    // A scheduler Redis lost is put back here too (its row says it should exist), so next_run_at is a real one.
    const next = await nextRun(deps, instance.id)
      .then((found) => found ?? upsertScheduler(deps, instance.id, row.interval_ms))
      .catch(() => undefined);
    return c.json(toSchedule({ ...row, next_run_at: next ?? row.next_run_at }), 200);
  });

  app.openapi(putScheduleRoute, async (c) => {
    const body = c.req.valid("json");
    const instance = await requireInstance(deps, c.req.valid("param").id);
    const existing = await findSchedule(deps.db, instance.id);
    const intervalMs = parseGoDuration(body.interval)!;
    const now = new Date().toISOString();
    // Always upserted (a scheduler Redis lost comes back); the same interval keeps its phase, so its next run.
    const nextRunAt = await upsertScheduler(deps, instance.id, intervalMs);
    const row = {
      instance_id: instance.id,
      schedule_id: existing?.schedule_id ?? newId(),
      interval: body.interval,
      interval_ms: intervalMs,
      retention: JSON.stringify(body.retention),
      metadata: JSON.stringify(body.metadata ?? {}),
      name_prefix: body.name_prefix ?? null,
      next_run_at: nextRunAt,
      last_run_at: existing?.last_run_at ?? null,
      last_snapshot_id: existing?.last_snapshot_id ?? null,
      last_error: existing?.last_error ?? null,
      created_at: existing?.created_at ?? now,
      updated_at: now,
    };
    await saveSchedule(deps.db, row);
    return c.json(toSchedule(row), 200);
  });

  app.openapi(deleteScheduleRoute, async (c) => {
    const instance = await requireInstance(deps, c.req.valid("param").id);
    if (!(await findSchedule(deps.db, instance.id))) throw notFound("snapshot schedule of instance", instance.name);
    await removeScheduler(deps, instance.id);
    await deleteSchedule(deps.db, instance.id);
    return c.body(null, 204);
  });
}
