// Where a snapshot's payload is kept, as a table: the owner host moves `storage` step by step while it uploads to
// the object store (workers/compression/upload-snapshot.ts), and every step is a record change with its event.
import type { EventType } from "../events/catalog.ts";
import type { StorageState } from "../schemas/snapshot.ts";
import type { SnapshotRecord } from "./store.ts";

/** Each allowed step: from → to, and the event the record change carries. */
export const STORAGE_TRANSITIONS: ReadonlyArray<{ from: StorageState; to: StorageState; event: EventType }> = [
  // An upload starts after a capture, on a retry, or when a store is configured for snapshots captured before.
  { from: "local", to: "uploading", event: "snapshot.upload.started" },
  { from: "error", to: "uploading", event: "snapshot.upload.started" },
  { from: "uploading", to: "stored", event: "snapshot.stored" },
  { from: "uploading", to: "error", event: "snapshot.upload.failed" },
  // A compression that finished changed the payload: the store's complete copy is the earlier form until the next.
  { from: "stored", to: "uploading", event: "snapshot.compression.completed" },
];

export class StorageTransitionError extends Error {
  override name = "StorageTransitionError";
}

/** The event of the step from the record's storage to `to`; throws when the table has no such step. */
export function storageStep(record: SnapshotRecord, to: StorageState): EventType {
  const from = record.snapshot.storage;
  const step = STORAGE_TRANSITIONS.find((candidate) => candidate.from === from && candidate.to === to);
  if (!step)
    throw new StorageTransitionError(`snapshot ${record.snapshot.id}: storage cannot go from ${from} to ${to}`);
  return step.event;
}

/** Does this host owe the object store an upload of the record (an original, not yet stored as it is now)? */
export function needsUpload(record: SnapshotRecord): boolean {
  return !record.replica_of && record.snapshot.storage !== "stored";
}
