// Snapshot schedules in the read model's database: one row per instance, written by the API only.
import type { Selectable } from "kysely";
import type { SnapshotSchedule } from "../../shared/schemas/snapshot-schedule.ts";
import type { Db } from "../db/database.ts";
import type { SnapshotSchedulesTable } from "../db/schema.ts";

export type ScheduleRow = Selectable<SnapshotSchedulesTable>;

export function findSchedule(db: Db, instanceId: string): Promise<ScheduleRow | undefined> {
  return db.selectFrom("snapshot_schedules").selectAll().where("instance_id", "=", instanceId).executeTakeFirst();
}

export async function saveSchedule(db: Db, row: ScheduleRow): Promise<void> {
  await db
    .insertInto("snapshot_schedules")
    .values(row)
    .onConflict((conflict) => conflict.column("instance_id").doUpdateSet(row))
    .execute();
}

/** Records a run's outcome; a schedule deleted meanwhile stays deleted. */
export async function recordRun(
  db: Db,
  instanceId: string,
  run: Pick<ScheduleRow, "last_run_at" | "last_snapshot_id" | "last_error" | "next_run_at">,
): Promise<void> {
  await db
    .updateTable("snapshot_schedules")
    .set({ ...run, updated_at: new Date().toISOString() })
    .where("instance_id", "=", instanceId)
    .execute();
}

export async function deleteSchedule(db: Db, instanceId: string): Promise<boolean> {
  const result = await db.deleteFrom("snapshot_schedules").where("instance_id", "=", instanceId).executeTakeFirst();
  return Number(result.numDeletedRows) > 0;
}

export function toSchedule(row: ScheduleRow): SnapshotSchedule {
  return {
    instance_id: row.instance_id,
    interval: row.interval,
    retention: JSON.parse(row.retention) as SnapshotSchedule["retention"],
    metadata: JSON.parse(row.metadata) as Record<string, string>,
    name_prefix: row.name_prefix,
    next_run_at: row.next_run_at,
    last_run_at: row.last_run_at,
    last_snapshot_id: row.last_snapshot_id,
    last_error: row.last_error,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}
