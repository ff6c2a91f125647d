// Anti-entropy that also removes: a host's complete announcement (every part of one announcement_id applied) is
// authoritative for that host. A live row the read model holds as that host's which the announcement lacks (neither
// record nor tombstone) vanished from the host (its directory removed by hand, moved to quarantine): it is removed as
// a tombstone would remove it. Rows of other hosts are never touched: a host holding a replica of another host's
// snapshot does not announce it, and a host that is offline announces nothing, so nothing of theirs goes.
import type { HostAnnouncement } from "../../shared/events/announcement.ts";
import type { Instance } from "../../shared/schemas/instance.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import { type Change, markVanished, type Trx } from "./apply.ts";

/**
 * A live row the read model holds as the announcing host's: `instance:<id>` or `snapshot:<id>`, and when the host
 * made its state (its clock; the resource's created_at, which the API stamped, when the host did not say).
 */
export interface HeldRow {
  key: string;
  changedAt: string;
}

/** A stored part of an announcement. */
export interface ReceivedPart {
  part: number;
  parts: number;
  announced_at: string;
  resource_keys: string;
}

/** The key of a resource in an announcement and in the read model. */
export const resourceKey = (kind: "instance" | "snapshot", id: string) => `${kind}:${id}`;

/** Every record and tombstone one part announces, by key. */
export function keysOfPart(announcement: HostAnnouncement): string[] {
  return [
    ...announcement.instances.map(({ instance }) => resourceKey("instance", instance.id)),
    ...announcement.snapshots.map(({ snapshot }) => resourceKey("snapshot", snapshot.id)),
    ...announcement.tombstones.map((tombstone) =>
      tombstone.kind === "instance"
        ? resourceKey("instance", tombstone.instance.id)
        : resourceKey("snapshot", tombstone.snapshot.id),
    ),
  ];
}

/** Are all `parts` parts in (each once, all agreeing on the count)? An incomplete announcement removes nothing. */
export function isComplete(received: ReceivedPart[], parts: number): boolean {
  const numbers = new Set(received.filter((part) => part.parts === parts).map((part) => part.part));
  for (let part = 0; part < parts; part++) if (!numbers.has(part)) return false;
  return true;
}

/**
 * The rows a complete announcement proves gone: those it lacks whose state the host made before it took its listing
 * (`announcedAt` is stamped before the listing, workers/capture/announcer.ts; both times are the host's clock). A row
 * the host made at or after that instant may be missing only because the listing was taken first: it stays, and the
 * next announcement decides. The host stamps a change just before writing it, so a change stamped before the
 * listing whose write lands after the listing started is not caught by this; if removed, the host's next record of
 * it (event or announcement) brings it back (apply.ts, vanished rows).
 */
export function vanishedRows<T extends HeldRow>(held: T[], announced: ReadonlySet<string>, announcedAt: string): T[] {
  const listedAt = Date.parse(announcedAt);
  return held.filter((row) => !announced.has(row.key) && Date.parse(row.changedAt) < listedAt);
}

/**
 * Records one applied part of a host's announcement (after its changes, in the same transaction); once all its
 * parts are in, removes what the host no longer has. Returns the keys of the rows removed. Parts are kept in the
 * database, so parts applied by different API replicas count together; two replicas committing the last two parts
 * at once on PostgreSQL may each see the other's missing, and then the next announcement removes what this one would.
 */
export async function applyAnnouncementPart(trx: Trx, announcement: HostAnnouncement): Promise<string[]> {
  const { announcement_id, part, parts, host_id, announced_at } = announcement;
  await trx
    .insertInto("announcement_parts")
    .values({
      announcement_id,
      part,
      parts,
      host_id,
      announced_at,
      resource_keys: JSON.stringify(keysOfPart(announcement)),
    })
    .onConflict((conflict) => conflict.columns(["announcement_id", "part"]).doNothing())
    .execute();
  const received = await trx
    .selectFrom("announcement_parts")
    .select(["part", "parts", "announced_at", "resource_keys"])
    .where("announcement_id", "=", announcement_id)
    .where("host_id", "=", host_id)
    .execute();
  if (!isComplete(received, parts)) return [];
  const announced = new Set(received.flatMap((row) => JSON.parse(row.resource_keys) as string[]));
  const listedAt = received.map((row) => row.announced_at).sort()[0]!;
  const gone = vanishedRows(await heldRows(trx, host_id), announced, listedAt);
  await markVanished(trx, await changesOf(trx, gone), listedAt);
  // This announcement is done with, and so is any older one of the host that never completed.
  await trx
    .deleteFrom("announcement_parts")
    .where("host_id", "=", host_id)
    .where((eb) => eb.or([eb("announcement_id", "=", announcement_id), eb("announced_at", "<", listedAt)]))
    .execute();
  return gone.map((row) => row.key);
}

type HeldRowOf = HeldRow & { kind: "instance" | "snapshot"; id: string };

async function heldRows(trx: Trx, hostId: string): Promise<HeldRowOf[]> {
  const rows: HeldRowOf[] = [];
  for (const kind of ["instance", "snapshot"] as const) {
    const live = await trx
      .selectFrom(kind === "instance" ? "instances" : "snapshots")
      .select(["id", "created_at", "host_changed_at"])
      .where("host_id", "=", hostId)
      .where("deleted_at", "is", null)
      .execute();
    for (const row of live) {
      const changedAt = row.host_changed_at ?? row.created_at;
      rows.push({ kind, id: row.id, key: resourceKey(kind, row.id), changedAt });
    }
  }
  return rows;
}

/** The stored resources of `rows`, as changes for markVanished (which needs their names and tags). */
async function changesOf(trx: Trx, rows: HeldRowOf[]): Promise<Change[]> {
  const changes: Change[] = [];
  for (const row of rows) {
    if (row.kind === "instance") {
      const stored = await trx
        .selectFrom("instances")
        .select(["resource", "version"])
        .where("id", "=", row.id)
        .executeTakeFirstOrThrow();
      const instance = JSON.parse(stored.resource) as Instance;
      changes.push({ kind: "instance", instance, version: stored.version, deletedAt: null });
    } else {
      const stored = await trx
        .selectFrom("snapshots")
        .select(["resource", "version"])
        .where("id", "=", row.id)
        .executeTakeFirstOrThrow();
      const snapshot = JSON.parse(stored.resource) as Snapshot;
      changes.push({ kind: "snapshot", snapshot, version: stored.version, deletedAt: null });
    }
  }
  return changes;
}
