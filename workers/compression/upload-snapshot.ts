// The owner's upload of a snapshot to the object store (shared/object-store.ts), a background job of the host's
// compression queue: after a capture, and again after a compression changed the payload. It makes the store match the
// record as it is now: objects the store already holds with the same sha256 are not sent again, the record and then
// the manifest (the commit point) are written, objects the manifest no longer names are removed, and `storage` moves
// step by step (shared/snapshots/storage.ts). A failure marks the snapshot `error` and throws, so the job retries
// with back-off; the host's own copy serves forks all along. A snapshot deleted meanwhile leaves no object behind.
import type { Redis } from "ioredis";
import type { EventStream } from "../../shared/events/stream.ts";
import { nextStamp } from "../../shared/host-records.ts";
import { type Lease, withRedisLock } from "../../shared/locks.ts";
import type { Logger } from "../../shared/logger.ts";
import { type ObjectStore, type StoreManifest, sha256File } from "../../shared/object-store.ts";
import type { StorageState } from "../../shared/schemas/snapshot.ts";
import { ARCHIVE_FORMAT, ARCHIVE_MANIFEST_ENTRY } from "../../shared/snapshots/archive.ts";
import { entryPath, prepareExport } from "../../shared/snapshots/export-files.ts";
import { needsUpload, storageStep } from "../../shared/snapshots/storage.ts";
import { publishSnapshotRecord, type SnapshotRecord, type SnapshotStore } from "../../shared/snapshots/store.ts";

export interface UploadSnapshotDeps {
  store: SnapshotStore;
  objects: ObjectStore;
  events: EventStream;
  redis: Redis;
  prefix: string;
  log: Logger;
}

export type UploadOutcome = "stored" | "skipped";

/** A payload that changes while it is uploaded (a compression finishing) is uploaded again, at most this often. */
const MAX_ROUNDS = 3;

/** One upload per snapshot at a time across processes; it holds no record lock while bytes move. */
const uploadLockKey = (prefix: string, snapshotId: string) => `${prefix}:lock:upload:${snapshotId}`;

export async function uploadSnapshot(
  deps: UploadSnapshotDeps,
  snapshotId: string,
  signal: AbortSignal,
): Promise<UploadOutcome> {
  return withRedisLock(
    deps.redis,
    uploadLockKey(deps.prefix, snapshotId),
    { ttlMs: 60_000, waitMs: 600_000 },
    async (lease) => {
      // Stops at a shutdown, and when the lease is lost (another uploader took over).
      const stop = AbortSignal.any([signal, lease.signal]);
      for (let round = 1; round <= MAX_ROUNDS; round += 1) {
        const record = await deps.store.read(snapshotId);
        if (!record || record.replica_of) return removeIfGone(deps, snapshotId);
        if (!needsUpload(record)) return "stored";
        try {
          const uploaded = await uploadOnce(deps, record, lease, stop);
          const outcome = await markStored(deps, snapshotId, uploaded);
          if (outcome !== "changed") return outcome;
        } catch (error) {
          if (stop.aborted) throw error; // shutdown or takeover: the job runs again, or the other uploader finishes
          // Deleted while it was uploading: what this upload put goes too (the delete listed the objects before).
          if (!(await deps.store.read(snapshotId).catch(() => record))) return removeIfGone(deps, snapshotId);
          await markFailed(deps, snapshotId, error);
          throw error;
        }
      }
      deps.log.warn({ snapshotId }, "payload kept changing while it was uploaded: the next job uploads it again");
      return "skipped";
    },
  );
}

/** Sends what the store lacks of the record as it is now; returns the manifest it committed. */
async function uploadOnce(deps: UploadSnapshotDeps, record: SnapshotRecord, lease: Lease, signal: AbortSignal) {
  const { store, objects, log } = deps;
  const snapshotId = record.snapshot.id;
  await setStorage(deps, snapshotId, "uploading");
  const started = performance.now();
  const listing = await prepareExport(store, snapshotId);
  const current = listing.record as SnapshotRecord;
  const previous = await objects.readManifest(snapshotId).catch(() => undefined);
  const entries: StoreManifest["entries"] = [];
  let sentBytes = 0;
  for (const file of listing.files) {
    signal.throwIfAborted();
    const local = entryPath(store, snapshotId, file.name);
    const sha256 = await sha256File(local);
    const held = previous?.entries.find((entry) => entry.name === file.name);
    // The previous manifest says the store holds it; the store is asked whether it still does before it is skipped.
    const skip =
      held?.sha256 === sha256 && held.size === file.size && (await objects.sizeOf(snapshotId, file.name)) === file.size;
    if (!skip) {
      await objects.putFile(snapshotId, file.name, local, signal);
      sentBytes += file.size;
    }
    entries.push({ name: file.name, size: file.size, sha256 });
  }
  const manifest: StoreManifest = {
    format: ARCHIVE_FORMAT,
    record: current,
    record_version: current.version,
    compression_state: current.snapshot.compression_state,
    entries,
  };
  await lease.assertHeld(); // another uploader that took over must not have its objects removed by this one
  await objects.putManifest(snapshotId, manifest, signal);
  await lease.assertHeld();
  const names = new Set([ARCHIVE_MANIFEST_ENTRY, ...entries.map((entry) => entry.name)]);
  const removed = await objects.deleteOthers(snapshotId, names);
  log.info(
    { snapshotId, sentBytes, objects: entries.length, removed, ms: Math.round(performance.now() - started) },
    "snapshot uploaded to the object store",
  );
  return manifest;
}

/**
 * uploading → stored, when the payload is still the one uploaded; "changed" when a compression finished meanwhile (the
 * next round uploads its image), "skipped" when the snapshot was deleted meanwhile (its objects are removed).
 */
async function markStored(
  deps: UploadSnapshotDeps,
  snapshotId: string,
  uploaded: StoreManifest,
): Promise<UploadOutcome | "changed"> {
  const outcome = await deps.store.withLock(snapshotId, async () => {
    const record = await deps.store.read(snapshotId);
    if (!record) return "gone" as const;
    if (record.snapshot.compression_state !== uploaded.compression_state) return "changed" as const;
    await writeStorage(deps, record, "stored", null);
    return "stored" as const;
  });
  if (outcome === "gone") return removeIfGone(deps, snapshotId);
  return outcome;
}

async function markFailed(deps: UploadSnapshotDeps, snapshotId: string, error: unknown): Promise<void> {
  const message = error instanceof Error ? error.message : String(error);
  deps.log.warn({ snapshotId, err: message }, "snapshot upload failed: retried with back-off");
  await deps.store
    .withLock(snapshotId, async () => {
      const record = await deps.store.read(snapshotId);
      if (record?.snapshot.storage === "uploading") await writeStorage(deps, record, "error", message);
    })
    .catch((markError: Error) => deps.log.warn({ snapshotId, err: markError.message }, "upload error not recorded"));
}

/** Moves storage to `to` under the snapshot's lock, unless it is there already. */
async function setStorage(deps: UploadSnapshotDeps, snapshotId: string, to: StorageState): Promise<void> {
  await deps.store.withLock(snapshotId, async () => {
    const record = await deps.store.read(snapshotId);
    if (record && record.snapshot.storage !== to) await writeStorage(deps, record, to, null);
  });
}

async function writeStorage(
  deps: UploadSnapshotDeps,
  record: SnapshotRecord,
  to: StorageState,
  error: string | null,
): Promise<void> {
  const next: SnapshotRecord = {
    ...record,
    snapshot: { ...record.snapshot, storage: to, storage_error: error },
    ...nextStamp(record, storageStep(record, to), null),
  };
  await deps.store.write(next);
  await publishSnapshotRecord(deps.events, next);
}

/** The snapshot is gone from this host (deleted, or never ours): whatever the store holds of it goes too. */
async function removeIfGone(deps: UploadSnapshotDeps, snapshotId: string): Promise<UploadOutcome> {
  const record = await deps.store.read(snapshotId);
  if (!record) {
    const removed = await deps.objects.deleteSnapshot(snapshotId);
    deps.log.info({ snapshotId, removed }, "snapshot deleted during its upload: its objects are removed");
  }
  return "skipped";
}
