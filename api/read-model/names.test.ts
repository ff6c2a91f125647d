// Name reservations hold across API replicas: the database's primary key decides, whichever replica asks.
import { afterEach, expect, it } from "vitest";
import { openTestDatabase } from "../../test/helpers/database.ts";
import { describeEachDialect } from "../../test/helpers/postgres.ts";
import { openDatabase } from "../db/database.ts";
import {
  PENDING_RESERVATION_MS,
  releaseExpiredReservations,
  releaseReservation,
  reserveName,
  withNameReservation,
} from "./names.ts";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describeEachDialect("name reservations on %s", (dialect) => {
  it("lets exactly one of many racing claims win, across connections, and frees the name again", async () => {
    const database = await openTestDatabase("names", dialect);
    // Two handles on one database: two replicas (for SQLite, two connections to one file).
    const replicas = [database.db, openDatabase(database.target)];
    cleanups.push(async () => {
      await replicas[1]!.destroy();
      await database.close();
    });
    const claims = await Promise.all(
      Array.from({ length: 10 }, (_, index) =>
        reserveName(replicas[index % 2]!, "instance", "web-1", `resource${index}`),
      ),
    );
    expect(claims.filter(Boolean)).toHaveLength(1);
    const winner = `resource${claims.indexOf(true)}`;
    await releaseReservation(replicas[1]!, "instance", winner);
    expect(await reserveName(replicas[0]!, "instance", "web-1", "resource-late")).toBe(true);
    const row = await replicas[1]!.selectFrom("name_reservations").selectAll().executeTakeFirstOrThrow();
    expect(row).toMatchObject({ scope: "instance", name: "web-1", resource_id: "resource-late" });
    expect(row.created_at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  });

  it("gives back a name whose claiming request never settled (its process died) once the hold has passed", async () => {
    const database = await openTestDatabase("names", dialect);
    cleanups.push(() => database.close());
    // Claimed, and then nothing: no success, no failure, no 504 (the API was killed while the job ran).
    expect(await reserveName(database.db, "instance", "orphaned", "resource-orphaned")).toBe(true);
    const soon = new Date(Date.now() + 60_000);
    expect(await releaseExpiredReservations(database.db, soon)).toBe(0); // the job may still make it
    const later = new Date(Date.now() + PENDING_RESERVATION_MS + 60_000);
    expect(await releaseExpiredReservations(database.db, later)).toBe(1);
    expect(await reserveName(database.db, "instance", "orphaned", "resource-retry")).toBe(true);
  });

  it("answers a taken name with the reference's 409 name_conflict, and runs nothing", async () => {
    const database = await openTestDatabase("names", dialect);
    cleanups.push(() => database.close());
    const reservation = { scope: "instance", name: "web-2", conflictMessage: "an instance named web-2 already exists" };
    await withNameReservation(database.db, { ...reservation, resourceId: "first" }, async () => "made");
    let ran = false;
    const second = withNameReservation(database.db, { ...reservation, resourceId: "second" }, async () => {
      ran = true;
    });
    await expect(second).rejects.toMatchObject({
      code: "name_conflict",
      status: 409,
      message: reservation.conflictMessage,
    });
    expect(ran).toBe(false);
  });
});
