// How each event changes the read model. Resource events carry the whole resource, so applying one is an
// upsert guarded by the per-subject sequence: an older event never overwrites a newer state, and nothing
// brings back a resource once it is deleted.
import type { Transaction } from "kysely";
import type { TypedEvent } from "../../shared/events/catalog.ts";
import type { Instance } from "../../shared/schemas/instance.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import type { Database } from "../db/schema.ts";
import { instanceNameScope, snapshotNameScope } from "./names.ts";

type Trx = Transaction<Database>;

export async function applyEvent(trx: Trx, event: TypedEvent): Promise<void> {
  switch (event.type) {
    case "instance.created":
    case "instance.updated":
    case "instance.forked":
    case "instance.restored":
      return upsertInstance(trx, (event as TypedEvent<"instance.updated">).data.instance, event.sequence, null);
    case "instance.deleted": {
      const { instance } = (event as TypedEvent<"instance.deleted">).data;
      await upsertInstance(trx, instance, event.sequence, event.occurred_at);
      await releaseName(trx, instanceNameScope(), instance.id);
      return;
    }
    case "snapshot.created":
    case "snapshot.compression.queued":
    case "snapshot.compression.started":
    case "snapshot.compression.progress":
    case "snapshot.compression.completed":
    case "snapshot.compression.failed":
      return upsertSnapshot(trx, (event as TypedEvent<"snapshot.created">).data.snapshot, event.sequence, null);
    case "snapshot.deleted": {
      const { snapshot } = (event as TypedEvent<"snapshot.deleted">).data;
      await upsertSnapshot(trx, snapshot, event.sequence, event.occurred_at);
      await releaseName(trx, snapshotNameScope(snapshot.source_instance_id), snapshot.id);
      return;
    }
  }
}

async function upsertInstance(trx: Trx, instance: Instance, sequence: number, deletedAt: string | null) {
  const row = {
    id: instance.id,
    name: instance.name,
    host_id: instance.host_id,
    state: instance.state,
    created_at: instance.created_at,
    resource: JSON.stringify(instance),
    sequence,
    deleted_at: deletedAt,
  };
  await trx
    .insertInto("instances")
    .values(row)
    .onConflict((conflict) =>
      conflict
        .column("id")
        .doUpdateSet(row)
        .where("instances.sequence", "<", sequence)
        .where("instances.deleted_at", "is", null),
    )
    .execute();
}

async function upsertSnapshot(trx: Trx, snapshot: Snapshot, sequence: number, deletedAt: string | null) {
  const row = {
    id: snapshot.id,
    name: snapshot.name,
    kind: snapshot.kind,
    source_instance_id: snapshot.source_instance_id,
    host_id: snapshot.host_id,
    compression_state: snapshot.compression_state,
    created_at: snapshot.created_at,
    resource: JSON.stringify(snapshot),
    sequence,
    deleted_at: deletedAt,
  };
  const applied = await trx
    .insertInto("snapshots")
    .values(row)
    .onConflict((conflict) =>
      conflict
        .column("id")
        .doUpdateSet(row)
        .where("snapshots.sequence", "<", sequence)
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
}

async function releaseName(trx: Trx, scope: string, resourceId: string) {
  await trx.deleteFrom("name_reservations").where("scope", "=", scope).where("resource_id", "=", resourceId).execute();
}
