// How events and host announcements change the read model. Both carry whole resources with their host-owned
// version, so applying one is an upsert guarded by that version: an older state never overwrites a newer one,
// applying anything twice changes nothing, and nothing brings back a resource once it is deleted.
//
// Changes are applied in runs in which no resource and no name appears twice: such changes cannot affect one another,
// so each run is a few multi-row statements (upsert, tags, names) with the same outcome as applying its changes one
// by one. A burst of events costs a handful of round trips per transaction instead of six per event.
import type { Transaction } from "kysely";
import type { HostAnnouncement } from "../../shared/events/announcement.ts";
import type { TypedEvent } from "../../shared/events/catalog.ts";
import type { Instance } from "../../shared/schemas/instance.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import type { Database } from "../db/schema.ts";
import { instanceNameScope, snapshotNameScope } from "./names.ts";

export type Trx = Transaction<Database>;

/**
 * One resource at one of its host-owned versions, live or deleted (at `deletedAt`); `changedAt` is when the host made
 * that state, by its clock, when known.
 */
export type Change =
  | { kind: "instance"; instance: Instance; version: number; deletedAt: string | null; changedAt?: string }
  | { kind: "snapshot"; snapshot: Snapshot; version: number; deletedAt: string | null; changedAt?: string };

/** Rows per multi-row statement: well under both dialects' limits on bound parameters. */
const ROWS_PER_STATEMENT = 500;

/** What an event changes: one resource, or nothing the read model keeps. */
export function changeOfEvent(event: TypedEvent): Change | undefined {
  switch (event.type) {
    case "instance.created":
    case "instance.updated":
    case "instance.forked":
    case "instance.restored":
    case "instance.deleted": {
      const { instance } = (event as TypedEvent<"instance.updated">).data;
      const deletedAt = event.type === "instance.deleted" ? event.occurred_at : null;
      return { kind: "instance", instance, version: event.version, deletedAt, changedAt: event.occurred_at };
    }
    case "snapshot.created":
    case "snapshot.compression.queued":
    case "snapshot.compression.started":
    case "snapshot.compression.progress":
    case "snapshot.compression.completed":
    case "snapshot.compression.failed":
    case "snapshot.upload.started":
    case "snapshot.stored":
    case "snapshot.upload.failed":
    case "snapshot.adopted":
    case "snapshot.deleted": {
      const { snapshot } = (event as TypedEvent<"snapshot.created">).data;
      const deletedAt = event.type === "snapshot.deleted" ? event.occurred_at : null;
      return { kind: "snapshot", snapshot, version: event.version, deletedAt, changedAt: event.occurred_at };
    }
  }
  return undefined;
}

/** One part of a host's full-state announcement: every resource and tombstone in it, each like its own event. */
export function changesOfAnnouncement(announcement: HostAnnouncement): Change[] {
  return [
    ...announcement.instances.map(
      ({ instance, version, changed_at }): Change => ({
        kind: "instance",
        instance,
        version,
        deletedAt: null,
        changedAt: changed_at,
      }),
    ),
    ...announcement.snapshots.map(
      ({ snapshot, version, changed_at }): Change => ({
        kind: "snapshot",
        snapshot,
        version,
        deletedAt: null,
        changedAt: changed_at,
      }),
    ),
    ...announcement.tombstones.map(
      (tombstone): Change =>
        tombstone.kind === "instance"
          ? {
              kind: "instance",
              instance: tombstone.instance,
              version: tombstone.version,
              deletedAt: tombstone.deleted_at,
            }
          : {
              kind: "snapshot",
              snapshot: tombstone.snapshot,
              version: tombstone.version,
              deletedAt: tombstone.deleted_at,
            },
    ),
  ];
}

/** Applies `changes` inside `trx` with the outcome of applying them one by one, in order. */
export async function applyChanges(trx: Trx, changes: Change[]): Promise<void> {
  let run: Change[] = [];
  const keys = new Set<string>();
  for (const change of changes) {
    const changeKeys = keysOf(change);
    if (changeKeys.some((key) => keys.has(key))) {
      await applyRun(trx, run);
      run = [];
      keys.clear();
    }
    run.push(change);
    for (const key of changeKeys) keys.add(key);
  }
  if (run.length > 0) await applyRun(trx, run);
}

/** What a change touches besides its own row: two changes sharing none of these are independent. */
function keysOf(change: Change): string[] {
  const name = nameOf(change);
  return name ? [rowKey(change), `${name.scope}\u0000${name.name}`] : [rowKey(change)];
}

/** A change's row: its table and id. */
const rowKey = (change: Change) => `${change.kind}:${resourceOf(change).id}`;

const resourceOf = (change: Change): Instance | Snapshot =>
  change.kind === "instance" ? change.instance : change.snapshot;

function nameOf(change: Change): { scope: string; name: string } | undefined {
  if (change.kind === "instance") return { scope: instanceNameScope(), name: change.instance.name };
  const { name, source_instance_id } = change.snapshot;
  return name === null ? undefined : { scope: snapshotNameScope(source_instance_id), name };
}

/** Independent changes (no resource or name twice): upserts, then the applied ones' tags and names. */
async function applyRun(trx: Trx, run: Change[]): Promise<void> {
  // In id order: concurrent transactions lock rows in one order.
  const sorted = [...run].sort((a, b) => (resourceOf(a).id < resourceOf(b).id ? -1 : 1));
  const instances = sorted.filter((change) => change.kind === "instance");
  const snapshots = sorted.filter((change) => change.kind === "snapshot");
  const applied = new Set<string>([
    ...(await upsertInstances(trx, instances)).map((id) => `instance:${id}`),
    ...(await upsertSnapshots(trx, snapshots)).map((id) => `snapshot:${id}`),
  ]);
  if (applied.size === 0) return; // all stale, or already gone for good
  const changed = sorted.filter((change) => applied.has(rowKey(change)));
  await replaceTags(
    trx,
    changed.filter((change) => change.kind === "snapshot"),
  );
  await settleNames(trx, changed);
}

/**
 * Removes rows complete announcements of their host lacked (ghosts.ts) as a tombstone would (tags dropped, names
 * given back), but at the version they had and marked vanished: a record of them from their host brings them back.
 */
export async function markVanished(trx: Trx, gone: Change[], vanishedAt: string): Promise<void> {
  const removed = gone.map((change) => ({ ...change, deletedAt: vanishedAt }));
  for (const kind of ["instance", "snapshot"] as const) {
    const ids = removed.filter((change) => change.kind === kind).map((change) => resourceOf(change).id);
    for (const chunk of chunks(ids)) {
      await trx
        .updateTable(kind === "instance" ? "instances" : "snapshots")
        .set({ deleted_at: vanishedAt, vanished_at: vanishedAt })
        .where("id", "in", chunk)
        .where("deleted_at", "is", null)
        .execute();
    }
  }
  await replaceTags(
    trx,
    removed.filter((change) => change.kind === "snapshot"),
  );
  await settleNames(trx, removed);
}

async function upsertInstances(trx: Trx, changes: Array<Extract<Change, { kind: "instance" }>>): Promise<string[]> {
  return upsertNewer(
    trx,
    "instances",
    changes.map(({ instance, version, deletedAt, changedAt }) => ({
      id: instance.id,
      name: instance.name,
      host_id: instance.host_id,
      state: instance.state,
      created_at: instance.created_at,
      resource: storedText(instance),
      version,
      deleted_at: deletedAt,
      host_changed_at: changedAt ?? null,
      missing_since: null,
      vanished_at: null,
    })),
  );
}

async function upsertSnapshots(trx: Trx, changes: Array<Extract<Change, { kind: "snapshot" }>>): Promise<string[]> {
  return upsertNewer(
    trx,
    "snapshots",
    changes.map(({ snapshot, version, deletedAt, changedAt }) => ({
      id: snapshot.id,
      name: snapshot.name,
      kind: snapshot.kind,
      source_instance_id: snapshot.source_instance_id,
      host_id: snapshot.host_id,
      compression_state: snapshot.compression_state,
      created_at: snapshot.created_at,
      resource: storedText(snapshot),
      version,
      deleted_at: deletedAt,
      host_changed_at: changedAt ?? null,
      missing_since: null,
      vanished_at: null,
    })),
  );
}

/** A resource's stored JSON text: host_online is derived at read time (api/host-status.ts), so it is never stored. */
function storedText(resource: Instance | Snapshot): string {
  return JSON.stringify({ ...resource, host_online: undefined });
}

/** A row of a resource table: the resource at a host-owned version, live or deleted. */
type ResourceRow = {
  id: string;
  version: number;
  deleted_at: string | null;
  missing_since: null;
  vanished_at: null;
  [column: string]: unknown;
};

/**
 * Writes each row that is new, or newer than its stored row and not deleted (an older state never overwrites a newer
 * one, nothing brings back a resource its host deleted); returns the ids of the rows written. A row that only vanished
 * (complete announcements lacked it, ghosts.ts) is written again by its host's record at the same version or newer:
 * the host has it after all.
 */
async function upsertNewer(trx: Trx, table: "instances" | "snapshots", rows: ResourceRow[]): Promise<string[]> {
  // biome-ignore lint/suspicious/noExplicitAny: one statement for both resource tables, whose columns differ
  const db = trx as Transaction<any>;
  const applied: string[] = [];
  for (const chunk of chunks(rows)) {
    const columns = Object.keys(chunk[0]!).filter((column) => column !== "id");
    const written = await db
      .insertInto(table)
      .values(chunk)
      .onConflict((conflict) =>
        conflict
          .column("id")
          .doUpdateSet((eb) => Object.fromEntries(columns.map((column) => [column, eb.ref(`excluded.${column}`)])))
          .where((eb) =>
            eb.or([
              eb.and([eb(`${table}.version`, "<", eb.ref("excluded.version")), eb(`${table}.deleted_at`, "is", null)]),
              eb.and([
                eb(`${table}.version`, "<=", eb.ref("excluded.version")),
                eb(`${table}.vanished_at`, "is not", null),
              ]),
            ]),
          ),
      )
      .returning("id")
      .execute();
    for (const row of written) applied.push(row.id as string);
  }
  return applied;
}

/**
 * A written snapshot's tags become those of its new state (none once deleted). Only what differs is written: most
 * changes (compression progress) keep the tags, and rewriting them was a third of the pages a burst wrote to SQLite's
 * log.
 */
async function replaceTags(trx: Trx, changes: Array<Extract<Change, { kind: "snapshot" }>>): Promise<void> {
  const tagsOf = ({ snapshot, deletedAt }: Extract<Change, { kind: "snapshot" }>) =>
    deletedAt ? [] : Object.entries(snapshot.tags);
  for (const chunk of chunks(changes)) {
    // Tags the new state no longer has.
    await trx
      .deleteFrom("snapshot_tags")
      .where((eb) =>
        eb.or(
          chunk.map((change) => {
            const keys = tagsOf(change).map(([key]) => key);
            const ofSnapshot = eb("snapshot_id", "=", change.snapshot.id);
            return keys.length === 0 ? ofSnapshot : eb.and([ofSnapshot, eb("key", "not in", keys)]);
          }),
        ),
      )
      .execute();
  }
  const tags = changes.flatMap((change) =>
    tagsOf(change).map(([key, value]) => ({ snapshot_id: change.snapshot.id, key, value })),
  );
  for (const chunk of chunks(tags)) {
    await trx
      .insertInto("snapshot_tags")
      .values(chunk)
      .onConflict((conflict) =>
        conflict
          .columns(["snapshot_id", "key"])
          .doUpdateSet((eb) => ({ value: eb.ref("excluded.value") }))
          .where((eb) => eb("snapshot_tags.value", "<>", eb.ref("excluded.value"))),
      )
      .execute();
  }
}

/**
 * A resource that exists holds its name (claimed again when the read model is rebuilt from announcements, and no
 * longer pending once its outcome is known); a deleted one gives it back.
 */
async function settleNames(trx: Trx, changes: Change[]): Promise<void> {
  const gone = changes.filter((change) => change.deletedAt !== null);
  for (const chunk of chunks(gone)) {
    await trx
      .deleteFrom("name_reservations")
      .where((eb) =>
        eb.or(
          chunk.map((change) =>
            eb.and([
              eb(
                "scope",
                "=",
                change.kind === "instance"
                  ? instanceNameScope()
                  : snapshotNameScope(change.snapshot.source_instance_id),
              ),
              eb("resource_id", "=", resourceOf(change).id),
            ]),
          ),
        ),
      )
      .execute();
  }
  const named = changes.flatMap((change) => {
    const name = change.deletedAt === null ? nameOf(change) : undefined;
    return name ? [{ ...name, resource_id: resourceOf(change).id, pending_until: null }] : [];
  });
  for (const chunk of chunks(named)) {
    await trx
      .insertInto("name_reservations")
      .values(chunk)
      .onConflict((conflict) => conflict.doNothing())
      .execute();
    await trx
      .updateTable("name_reservations")
      .set({ pending_until: null })
      .where(
        "resource_id",
        "in",
        chunk.map((row) => row.resource_id),
      )
      .where("pending_until", "is not", null)
      .execute();
  }
}

function chunks<T>(items: T[]): T[][] {
  const out: T[][] = [];
  for (let start = 0; start < items.length; start += ROWS_PER_STATEMENT) {
    out.push(items.slice(start, start + ROWS_PER_STATEMENT));
  }
  return out;
}
