// Anti-entropy that also removes: a host's complete announcement (every part of one announcement_id applied) is
// authoritative for that host, over the keys in its scope (all of them, or the digest buckets it covers,
// shared/events/digest.ts). A live row in its scope that the read model holds as that host's and which two complete
// announcements covering it in a row lack (neither record nor tombstone) vanished from the host (its directory removed by
// hand, moved to quarantine): it is removed as a tombstone would remove it. Rows outside the scope are not judged: a
// bucket-scoped announcement says nothing of other buckets. Rows of other hosts are never touched: a host holding a
// replica of another host's snapshot does not announce it, and a host that is offline announces nothing, so nothing of
// theirs goes.
import type { HostAnnouncement } from "../../shared/events/announcement.ts";
import { subjectOf } from "../../shared/events/catalog.ts";
import { type BucketScope, inScope } from "../../shared/events/digest.ts";
import type { Instance } from "../../shared/schemas/instance.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import { type Change, markVanished, type Trx } from "./apply.ts";

/**
 * A live row the read model holds as the announcing host's: `instance:<id>` or `snapshot:<id>`; when the host made its
 * state (its clock; the resource's created_at, which the API stamped, when the host did not say); and since which
 * complete announcement of the host it is missing, if one lacked it.
 */
export interface HeldRow {
  key: string;
  changedAt: string;
  missingSince: string | null;
}

/** What one complete announcement does to the host's rows. */
export interface Verdict<T> {
  /** Lacked by this announcement and the one before: removed. */
  vanished: T[];
  /** Lacked by this announcement only: missing since now. */
  missing: T[];
  /** Missing before, announced now: no longer missing. */
  found: T[];
}

/** A stored part of an announcement. */
export interface ReceivedPart {
  part: number;
  parts: number;
  announced_at: string;
  resource_keys: string;
}

/** Ids per statement: well under both dialects' limits on bound parameters. */
const IDS_PER_STATEMENT = 500;

/** The key of a resource in an announcement, a digest and the read model: its event subject. */
export const resourceKey = (kind: "instance" | "snapshot", id: string) => subjectOf[kind](id);

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
 * What a complete announcement proves: a row it lacks whose state the host made before it took its listing
 * (`announcedAt` is stamped before the listing, workers/host/announcer.ts; both times are the host's clock) is
 * missing, and goes once a second complete announcement lacks it too. One is not enough: the host stamps a change just
 * before writing it, so a record written while a listing was being taken can be lacking from that listing although
 * its event (appended before the announcement) is applied; the next listing starts after that announcement was
 * published, so it sees every record whose event came before. A row the host changed at or after the listing, or
 * changed at all since it went missing (apply.ts clears the mark), is not judged by this announcement.
 */
export function judgeHeldRows<T extends HeldRow>(
  held: T[],
  announced: ReadonlySet<string>,
  announcedAt: string,
): Verdict<T> {
  const listedAt = Date.parse(announcedAt);
  const verdict: Verdict<T> = { vanished: [], missing: [], found: [] };
  for (const row of held) {
    if (announced.has(row.key)) {
      if (row.missingSince !== null) verdict.found.push(row);
    } else if (Date.parse(row.changedAt) >= listedAt) {
      // made after the listing: the next announcement decides
    } else if (row.missingSince === null) verdict.missing.push(row);
    else if (Date.parse(row.missingSince) < listedAt) verdict.vanished.push(row);
  }
  return verdict;
}

/**
 * Records one applied part of a host's announcement (after its changes, in the same transaction); once all its
 * parts are in, marks what it lacks in its scope as missing and removes what the one before covering it lacked too.
 * Returns the keys of the rows removed. Parts are kept in the
 * database, so parts applied by different API replicas count together; two replicas committing the last two parts
 * at once on PostgreSQL may each see the other's missing, and then the next announcement removes what this one would.
 */
export async function applyAnnouncementPart(trx: Trx, announcement: HostAnnouncement): Promise<string[]> {
  const { announcement_id, part, parts, host_id, announced_at, scope } = announcement;
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
  // Every part of one announcement has the same scope (the host cuts one listing into parts): this part's is theirs.
  const verdict = judgeHeldRows(await heldRows(trx, host_id, scope), announced, listedAt);
  await setMissingSince(trx, verdict.missing, listedAt);
  await setMissingSince(trx, verdict.found, null);
  await markVanished(trx, await changesOf(trx, verdict.vanished), listedAt);
  // This announcement is done with, and so is any older one of the host that never completed.
  await trx
    .deleteFrom("announcement_parts")
    .where("host_id", "=", host_id)
    .where((eb) => eb.or([eb("announcement_id", "=", announcement_id), eb("announced_at", "<", listedAt)]))
    .execute();
  return verdict.vanished.map((row) => row.key);
}

/** Marks rows missing since `since`, or no longer missing (null). */
export async function setMissingSince(trx: Trx, rows: RowRef[], since: string | null): Promise<void> {
  for (const kind of ["instance", "snapshot"] as const) {
    const ids = rows.filter((row) => row.kind === kind).map((row) => row.id);
    for (let start = 0; start < ids.length; start += IDS_PER_STATEMENT) {
      await trx
        .updateTable(kind === "instance" ? "instances" : "snapshots")
        .set({ missing_since: since })
        .where("id", "in", ids.slice(start, start + IDS_PER_STATEMENT))
        .execute();
    }
  }
}

/** A row of the instances or snapshots table. */
export interface RowRef {
  kind: "instance" | "snapshot";
  id: string;
}

type HeldRowOf = HeldRow & RowRef;

/** The host's live rows whose keys are in `scope` (all of them without one). */
async function heldRows(trx: Trx, hostId: string, scope: BucketScope | undefined): Promise<HeldRowOf[]> {
  const rows: HeldRowOf[] = [];
  for (const kind of ["instance", "snapshot"] as const) {
    const live = await trx
      .selectFrom(kind === "instance" ? "instances" : "snapshots")
      .select(["id", "created_at", "host_changed_at", "missing_since"])
      .where("host_id", "=", hostId)
      .where("deleted_at", "is", null)
      .execute();
    for (const row of live) {
      const key = resourceKey(kind, row.id);
      if (!inScope(key, scope)) continue;
      const changedAt = row.host_changed_at ?? row.created_at;
      rows.push({ kind, id: row.id, key, changedAt, missingSince: row.missing_since });
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
