// Name reservations: a name is claimed in one SQLite statement before the creating job is queued.
import { ApiError } from "../../shared/errors.ts";
import type { Db } from "../db/database.ts";

export const instanceNameScope = () => "instance";
export const snapshotNameScope = (sourceInstanceId: string) => `snapshot:${sourceInstanceId}`;

/** Claims `name` in `scope` for `resourceId`; false when someone else holds it. */
export async function reserveName(db: Db, scope: string, name: string, resourceId: string): Promise<boolean> {
  const result = await db
    .insertInto("name_reservations")
    .values({ scope, name, resource_id: resourceId })
    .onConflict((conflict) => conflict.doNothing())
    .executeTakeFirst();
  return Number(result.numInsertedOrUpdatedRows ?? 0n) === 1;
}

/** Gives a name back when the job that would have used it failed. */
export async function releaseReservation(db: Db, scope: string, resourceId: string): Promise<void> {
  await db.deleteFrom("name_reservations").where("scope", "=", scope).where("resource_id", "=", resourceId).execute();
}

/**
 * Runs `create` holding `name` in `scope` for `resourceId`: a 409 `conflict` with `conflictMessage` when the name is
 * taken, and the name given back if `create` fails. With no name there is nothing to hold.
 */
export async function withNameReservation<T>(
  db: Db,
  reservation: { scope: string; name: string | undefined; resourceId: string; conflictMessage: string },
  create: () => Promise<T>,
): Promise<T> {
  const { scope, name, resourceId } = reservation;
  if (name === undefined) return create();
  if (!(await reserveName(db, scope, name, resourceId))) throw new ApiError("conflict", reservation.conflictMessage);
  try {
    return await create();
  } catch (error) {
    await releaseReservation(db, scope, resourceId);
    throw error;
  }
}
