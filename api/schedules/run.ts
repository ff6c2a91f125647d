// One run of a snapshot schedule: a snapshot through the same path as POST /instances/{id}/snapshots (policy,
// events, webhooks), then retention over that schedule's own snapshots, oldest first. Runs inside an API process.
import { parseGoDuration } from "../../shared/duration.ts";
import type { JobResult } from "../../shared/jobs/catalog.ts";
import { LockTimeoutError, withRedisLock } from "../../shared/locks.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import type { SnapshotSchedule } from "../../shared/schemas/snapshot-schedule.ts";
import type { AppDeps } from "../deps.ts";
import { findInstance, listSnapshots } from "../read-model/queries.ts";
import { createSnapshot, deleteSnapshot } from "../routes/snapshots.ts";
import { dueAt, nextRun, removeScheduler } from "./scheduler.ts";
import { deleteSchedule, findSchedule, recordRun, type ScheduleRow } from "./store.ts";

/** The tag that marks a snapshot as made by a schedule (its schedule_id): retention only ever touches those. */
export const SCHEDULE_TAG = "snapfleet.schedule";
const DEFAULT_NAME_PREFIX = "scheduled";

type RunResult = JobResult<"snapshot.schedule.run">;

export async function runSchedule(
  deps: AppDeps,
  instanceId: string,
  jobId: string | undefined,
  log: Logger,
): Promise<RunResult> {
  const schedule = await findSchedule(deps.db, instanceId);
  const instance = await findInstance(deps.db, instanceId);
  if (!schedule || !instance) {
    // Deleted meanwhile: the scheduler goes too.
    await removeScheduler(deps, instanceId);
    if (schedule) await deleteSchedule(deps.db, instanceId);
    return { outcome: "skipped", snapshot_id: null };
  }
  const due = dueAt(jobId) ?? Date.now();
  // One run of a schedule at a time, whichever API replica took it: two overlapping runs (a run slower than the
  // interval, or a run promoted by hand beside a due one) would each apply retention to a listing without the
  // other's snapshot and keep more than max_count. A run that waits past half an interval is a missed one.
  try {
    return await withRedisLock(
      deps.redis,
      `${deps.redisPrefix}:lock:schedule:${instanceId}`,
      { ttlMs: 60_000, waitMs: schedule.interval_ms / 2 },
      () => runDue(deps, instanceId, due, log),
    );
  } catch (error) {
    if (!(error instanceof LockTimeoutError)) throw error;
    log.warn({ instanceId, dueAt: new Date(due).toISOString() }, "scheduled snapshot skipped: a run still held it");
    return { outcome: "skipped", snapshot_id: null };
  }
}

async function runDue(deps: AppDeps, instanceId: string, due: number, log: Logger): Promise<RunResult> {
  const schedule = await findSchedule(deps.db, instanceId);
  const instance = await findInstance(deps.db, instanceId);
  if (!schedule || !instance) return { outcome: "skipped", snapshot_id: null };
  if (Date.now() - due > schedule.interval_ms / 2) {
    // The service was down when it was due: missed runs are not made up for, the next one comes on time.
    log.warn({ instanceId, dueAt: new Date(due).toISOString() }, "scheduled snapshot skipped: it was missed");
    return { outcome: "skipped", snapshot_id: null };
  }
  const now = new Date().toISOString();
  try {
    const snapshot = await createSnapshot(deps, instance, {
      kind: instance.state === "Stopped" ? "Stopped" : "Standby",
      name: scheduledName(schedule.name_prefix, due),
      tags: { ...JSON.parse(schedule.metadata), [SCHEDULE_TAG]: schedule.schedule_id },
    });
    const pruneError = await applyRetention(deps, schedule, log);
    await record(deps, instanceId, { last_run_at: now, last_snapshot_id: snapshot.id, last_error: pruneError });
    return { outcome: "created", snapshot_id: snapshot.id };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    log.warn({ instanceId, err: message }, "scheduled snapshot failed");
    await record(deps, instanceId, {
      last_run_at: now,
      last_snapshot_id: schedule.last_snapshot_id,
      last_error: message,
    });
    return { outcome: "failed", snapshot_id: null };
  }
}

/** `<prefix>-YYYYMMDD-hhmmss` of the due time (UTC): at most 47 + 16 = 63 characters, a valid snapshot name. */
export function scheduledName(prefix: string | null, due: number): string {
  const stamp = new Date(due).toISOString().replace(/[-:]/g, "").replace("T", "-").slice(0, 15);
  return `${prefix ?? DEFAULT_NAME_PREFIX}-${stamp}`;
}

/** The snapshots to delete: beyond max_count (oldest first) or older than max_age. */
export function expiredSnapshots(own: Snapshot[], retention: SnapshotSchedule["retention"], now: number): Snapshot[] {
  const oldestFirst = [...own].sort((left, right) => left.created_at.localeCompare(right.created_at));
  const excess = retention.max_count ? Math.max(0, oldestFirst.length - retention.max_count) : 0;
  const maxAgeMs = retention.max_age === undefined ? undefined : parseGoDuration(retention.max_age)!;
  return oldestFirst.filter(
    (snapshot, index) => index < excess || (maxAgeMs !== undefined && now - Date.parse(snapshot.created_at) > maxAgeMs),
  );
}

/** Deletes this schedule's expired snapshots; returns what went wrong, if anything (the run itself succeeded). */
async function applyRetention(deps: AppDeps, schedule: ScheduleRow, log: Logger): Promise<string | null> {
  const { snapshots } = await listSnapshots(
    deps.db,
    { source_instance_id: schedule.instance_id, tags: { [SCHEDULE_TAG]: schedule.schedule_id } },
    {},
  );
  for (const snapshot of expiredSnapshots(snapshots, JSON.parse(schedule.retention), Date.now())) {
    try {
      await deleteSnapshot(deps, snapshot);
    } catch (error) {
      log.warn({ snapshotId: snapshot.id, err: (error as Error).message }, "retention could not delete a snapshot");
      return `retention: could not delete snapshot ${snapshot.id}: ${(error as Error).message}`;
    }
  }
  return null;
}

async function record(
  deps: AppDeps,
  instanceId: string,
  run: Pick<ScheduleRow, "last_run_at" | "last_snapshot_id" | "last_error">,
): Promise<void> {
  const next = await nextRun(deps, instanceId).catch(() => undefined);
  const current = await findSchedule(deps.db, instanceId);
  if (!current) return;
  await recordRun(deps.db, instanceId, { ...run, next_run_at: next ?? current.next_run_at });
}
