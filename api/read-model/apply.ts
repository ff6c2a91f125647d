// How events and host announcements change the read model. Both carry whole resources with their host-owned
// version, so applying one is an upsert guarded by that version: an older state never overwrites a newer one,
// applying anything twice changes nothing, and nothing brings back a resource once it is deleted.
import type { Transaction } from "kysely";
import type { HostAnnouncement } from "../../shared/events/announcement.ts";
import type { TypedEvent } from "../../shared/events/catalog.ts";
import type { Instance } from "../../shared/schemas/instance.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import type { Database } from "../db/schema.ts";
import { instanceNameScope, snapshotNameScope } from "./names.ts";

export type Trx = Transaction<Database>;

export async function applyEvent(trx: Trx, event: TypedEvent): Promise<void> {
  switch (event.type) {
    case "instance.created":
    case "instance.updated":
    case "instance.forked":
    case "instance.restored":
      return upsertInstance(trx, (event as TypedEvent<"instance.updated">).data.instance, event.version, null);
    case "instance.deleted":
      return upsertInstance(
        trx,
        (event as TypedEvent<"instance.deleted">).data.instance,
        event.version,
        event.occurred_at,
      );
    case "snapshot.created":
    case "snapshot.compression.queued":
    case "snapshot.compression.started":
    case "snapshot.compression.progress":
    case "snapshot.compression.completed":
    case "snapshot.compression.failed":
      return upsertSnapshot(trx, (event as TypedEvent<"snapshot.created">).data.snapshot, event.version, null);
    case "snapshot.deleted":
      return upsertSnapshot(
        trx,
        (event as TypedEvent<"snapshot.deleted">).data.snapshot,
        event.version,
        event.occurred_at,
      );
  }
}

/** One part of a host's full-state announcement: every resource and tombstone in it, each like its own event. */
export async function applyAnnouncement(trx: Trx, announcement: HostAnnouncement): Promise<void> {
  for (const { instance, version } of announcement.instances) await upsertInstance(trx, instance, version, null);
  for (const { snapshot, version } of announcement.snapshots) await upsertSnapshot(trx, snapshot, version, null);
  for (const tombstone of announcement.tombstones) {
    if (tombstone.kind === "instance") {
      await upsertInstance(trx, tombstone.instance, tombstone.version, tombstone.deleted_at);
    } else {
      await upsertSnapshot(trx, tombstone.snapshot, tombstone.version, tombstone.deleted_at);
    }
  }
}

async function upsertInstance(trx: Trx, instance: Instance, version: number, deletedAt: string | null) {
  const row = {
    id: instance.id,
    name: instance.name,
    host_id: instance.host_id,
    state: instance.state,
    created_at: instance.created_at,
    resource: JSON.stringify(instance),
    version,
    deleted_at: deletedAt,
  };
  const applied = await trx
    .insertInto("instances")
    .values(row)
    .onConflict((conflict) =>
      conflict
        .column("id")
        .doUpdateSet(row)
        .where("instances.version", "<", version)
        .where("instances.deleted_at", "is", null),
    )
    .executeTakeFirst();
  if (Number(applied.numInsertedOrUpdatedRows ?? 0n) === 0) return; // stale, or already gone for good
  await settleName(trx, instanceNameScope(), instance.name, instance.id, deletedAt);
}

async function upsertSnapshot(trx: Trx, snapshot: Snapshot, version: number, deletedAt: string | null) {
  const row = {
    id: snapshot.id,
    name: snapshot.name,
    kind: snapshot.kind,
    source_instance_id: snapshot.source_instance_id,
    host_id: snapshot.host_id,
    compression_state: snapshot.compression_state,
    created_at: snapshot.created_at,
    resource: JSON.stringify(snapshot),
    version,
    deleted_at: deletedAt,
  };
  const applied = await trx
    .insertInto("snapshots")
    .values(row)
    .onConflict((conflict) =>
      conflict
        .column("id")
        .doUpdateSet(row)
        .where("snapshots.version", "<", version)
        .where("snapshots.deleted_at", "is", null),
    )
    .executeTakeFirst();
  if (Number(applied.numInsertedOrUpdatedRows ?? 0n) === 0) return; // stale, or already gone for good
  await trx.deleteFrom("snapshot_tags").where("snapshot_id", "=", snapshot.id).execute();
  const tags = deletedAt ? [] : Object.entries(snapshot.tags);
  if (tags.length > 0) {
    await trx
      .insertInto("snapshot_tags")
      .values(tags.map(([key, value]) => ({ snapshot_id: snapshot.id, key, value })))
      .execute();
  }
  await settleName(trx, snapshotNameScope(snapshot.source_instance_id), snapshot.name, snapshot.id, deletedAt);
}

/**
 * A resource that exists holds its name (claimed again when the read model is rebuilt from announcements, and no
 * longer pending once its outcome is known); a deleted one gives it back.
 */
async function settleName(trx: Trx, scope: string, name: string | null, resourceId: string, deletedAt: string | null) {
  if (deletedAt) {
    await trx
      .deleteFrom("name_reservations")
      .where("scope", "=", scope)
      .where("resource_id", "=", resourceId)
      .execute();
    return;
  }
  if (name === null) return;
  await trx
    .insertInto("name_reservations")
    .values({ scope, name, resource_id: resourceId, pending_until: null })
    .onConflict((conflict) => conflict.doNothing())
    .execute();
  await trx
    .updateTable("name_reservations")
    .set({ pending_until: null })
    .where("resource_id", "=", resourceId)
    .where("pending_until", "is not", null)
    .execute();
}
