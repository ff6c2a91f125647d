// Name reservations: a name is claimed in one statement before the creating job is queued, and given back when the
// job failed. When the outcome is unknown (the API stopped waiting: 504, or the API process died mid-request) the
// name stays held: the resource may yet appear, and a client retrying must not get a duplicate. Every hold ends when
// the resource shows up in the read model (it is then the resource's), or PENDING_RESERVATION_MS after it was last
// claimed or held with no resource: a claim is made with that deadline, so one whose process died is not held for
// ever.
import { ApiError } from "../../shared/errors.ts";
import type { Db } from "../db/database.ts";

export const instanceNameScope = () => "instance";
export const snapshotNameScope = (sourceInstanceId: string) => `snapshot:${sourceInstanceId}`;

/**
 * Claims `name` in `scope` for `resourceId`; false when someone else holds it. A hold for the same resource id is
 * this request's own: a retry that took over the Idempotency-Key of a request whose process died makes the same id
 * (api/resource-ids.ts), and carries on with that request's reservation.
 */
export async function reserveName(db: Db, scope: string, name: string, resourceId: string): Promise<boolean> {
  const pendingUntil = new Date(Date.now() + PENDING_RESERVATION_MS).toISOString();
  const result = await db
    .insertInto("name_reservations")
    .values({ scope, name, resource_id: resourceId, pending_until: pendingUntil })
    .onConflict((conflict) => conflict.doNothing())
    .executeTakeFirst();
  if (Number(result.numInsertedOrUpdatedRows ?? 0n) === 1) return true;
  const holder = await db
    .selectFrom("name_reservations")
    .select("resource_id")
    .where("scope", "=", scope)
    .where("name", "=", name)
    .executeTakeFirst();
  return holder?.resource_id === resourceId;
}

/** Longer than any host job may run (10 min) plus a few announcement intervals: by then the outcome is known. */
export const PENDING_RESERVATION_MS = 15 * 60_000;

/** A 504: the host may still complete the job (or roll it back); only the read model will tell. */
export const outcomeUnknown = (error: unknown) => error instanceof ApiError && error.status === 504;

/** Gives a name back when the job that would have used it failed. */
export async function releaseReservation(db: Db, scope: string, resourceId: string): Promise<void> {
  await db.deleteFrom("name_reservations").where("scope", "=", scope).where("resource_id", "=", resourceId).execute();
}

/**
 * Runs `create` holding `name` in `scope` for `resourceId`: a 409 `name_conflict` with `conflictMessage` when the name is
 * taken, and the name given back if `create` fails. With no name there is nothing to hold.
 */
export async function withNameReservation<T>(
  db: Db,
  reservation: { scope: string; name: string | undefined; resourceId: string; conflictMessage: string },
  create: () => Promise<T>,
): Promise<T> {
  const { scope, name, resourceId } = reservation;
  if (name === undefined) return create();
  if (!(await reserveName(db, scope, name, resourceId)))
    throw new ApiError("name_conflict", reservation.conflictMessage);
  try {
    return await create();
  } catch (error) {
    if (outcomeUnknown(error)) await holdReservation(db, scope, resourceId);
    else await releaseReservation(db, scope, resourceId);
    throw error;
  }
}

async function holdReservation(db: Db, scope: string, resourceId: string): Promise<void> {
  await db
    .updateTable("name_reservations")
    .set({ pending_until: new Date(Date.now() + PENDING_RESERVATION_MS).toISOString() })
    .where("scope", "=", scope)
    .where("resource_id", "=", resourceId)
    .execute();
}

/** Releases held names whose deadline passed with no resource in the read model (the job never ran or failed). */
export async function releaseExpiredReservations(db: Db, now = new Date()): Promise<number> {
  const result = await db
    .deleteFrom("name_reservations")
    .where("pending_until", "<", now.toISOString())
    .where((eb) =>
      eb.and([
        eb("resource_id", "not in", eb.selectFrom("instances").select("id").where("deleted_at", "is", null)),
        eb("resource_id", "not in", eb.selectFrom("snapshots").select("id").where("deleted_at", "is", null)),
      ]),
    )
    .executeTakeFirst();
  return Number(result.numDeletedRows);
}
