// Name reservations: a name is claimed in one SQLite statement before the creating job is queued.
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
