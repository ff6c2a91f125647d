// Compresses one snapshot's memory payload into a squashfs image (shared/squashfs) that forks mount and map
// without decompressing it first: none → compressing → compressed, or error with the raw payload kept.
// Safe to run again after a crash (it starts over from the raw file, or announces again a state it already wrote)
// and stops when the snapshot is deleted. Every state change bumps the record's version with its event.
import { readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import { type BlockCodec, CodecError } from "../../shared/codec/index.ts";
import { type CrashPoint, crashPoint } from "../../shared/crash-points.ts";
import { subjectOf } from "../../shared/events/catalog.ts";
import type { EventStream } from "../../shared/events/stream.ts";
import { nextStamp } from "../../shared/host-records.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import {
  COMPRESSED_SUFFIX,
  needsCompression,
  publishSnapshotRecord,
  type SnapshotRecord,
  type SnapshotStore,
} from "../../shared/snapshots/store.ts";
import { checksumsFile } from "../../shared/squashfs/checksums.ts";
import { writeSquashfsImage } from "../../shared/squashfs/writer.ts";
import { isTemporaryOf } from "../../shared/temp-names.ts";

/** Progress events at most this often. */
const PROGRESS_INTERVAL_MS = 500;

export interface CompressSnapshotDeps {
  store: SnapshotStore;
  events: EventStream;
  log: Logger;
  /** The block codec images are written with (default: the process's); tests hand in a faulty one. */
  codec?: BlockCodec;
  /** An object store is configured: a stored snapshot's changed payload must be uploaded again. */
  objects?: ObjectStore;
}

export type CompressOutcome = "compressed" | "error" | "skipped";

class SnapshotGoneError extends Error {}

export async function compressSnapshot(
  deps: CompressSnapshotDeps,
  snapshotId: string,
  context: { signal: AbortSignal; isLastAttempt: boolean },
): Promise<CompressOutcome> {
  const started = await markStarted(deps, snapshotId);
  if (!started) return "skipped";
  const name = started.memory_payload!;
  const files: ImageFiles = {
    source: deps.store.file(snapshotId, name),
    destination: deps.store.file(snapshotId, `${name}${COMPRESSED_SUFFIX}`),
    destinationName: `${name}${COMPRESSED_SUFFIX}`,
  };
  const deleted = new AbortController(); // aborted when progress finds the snapshot gone
  const began = performance.now();
  try {
    const imageBytes = await writeImage(deps, started, files, AbortSignal.any([context.signal, deleted.signal]), () =>
      deleted.abort(),
    );
    return await markCompressed(deps, snapshotId, files, imageBytes, began);
  } catch (error) {
    return recover(deps, snapshotId, error, files, { ...context, deleted: deleted.signal });
  }
}

interface ImageFiles {
  source: string;
  destination: string;
  destinationName: string;
}

/** Step 1, under the snapshot's lock: none → compressing (or announce again a result an earlier run wrote). */
function markStarted(deps: CompressSnapshotDeps, snapshotId: string): Promise<SnapshotRecord | undefined> {
  return deps.store.withLock(snapshotId, async () => {
    const record = await deps.store.read(snapshotId);
    if (!record) return undefined;
    if (!needsCompression(record)) {
      // Done already (maybe by a run that died before announcing it): announce it again, harmlessly.
      await publishSnapshotRecord(deps.events, record);
      return undefined;
    }
    return setState(
      deps,
      record,
      { compression_state: "compressing", compression_error: null },
      "snapshot.compression.started",
      { crashAt: "compression.after-started-record" },
    );
  });
}

/** Step 2, outside the lock: the image, with progress events; `onGone` when progress finds the snapshot deleted. */
async function writeImage(
  deps: CompressSnapshotDeps,
  record: SnapshotRecord,
  files: ImageFiles,
  signal: AbortSignal,
  onGone: () => void,
): Promise<number> {
  const snapshotId = record.snapshot.id;
  const { algorithm, level } = record.snapshot.compression as { algorithm: "zstd" | "lz4"; level: number };
  let lastProgress = 0;
  const result = await writeSquashfsImage(files.source, files.destination, {
    algorithm,
    level,
    signal,
    codec: deps.codec,
    onProgress: (done, total) => {
      const now = performance.now();
      if (now - lastProgress < PROGRESS_INTERVAL_MS || done === total) return;
      lastProgress = now;
      void reportProgress(deps, snapshotId, done, total).catch((error: Error) => {
        if (error instanceof SnapshotGoneError) onGone();
      });
    },
  });
  return result.imageBytes;
}

/** Step 3, under the lock: compressing → compressed, then the raw payload goes (after the record says so). */
function markCompressed(
  deps: CompressSnapshotDeps,
  snapshotId: string,
  files: ImageFiles,
  imageBytes: number,
  began: number,
): Promise<CompressOutcome> {
  const { store, log } = deps;
  return store.withLock(snapshotId, async (lease) => {
    const record = await store.read(snapshotId);
    if (!record) {
      await removeImage(files.destination);
      return "skipped" as const;
    }
    const uncompressed = (await stat(files.source)).size;
    const completed = await setState(
      deps,
      record,
      {
        compression_state: "compressed",
        compression_error: null,
        compressed_size_bytes: imageBytes,
        uncompressed_size_bytes: uncompressed,
        // The store's copy is the raw form now: stored → uploading, in the same write (storage.ts).
        ...(deps.objects && record.snapshot.storage === "stored" ? { storage: "uploading" as const } : {}),
      },
      "snapshot.compression.completed",
      {
        crashAt: "compression.after-compressed-record",
        afterWrite: async () => {
          // The record says compressed before the raw file goes: a crash in between leaves a spare raw file, not a lie.
          await lease.assertHeld();
          await rm(files.source, { force: true });
          await removeTemporaries(store.dir(snapshotId), files.destinationName);
        },
      },
    );
    const { algorithm, level } = completed.snapshot.compression as { algorithm: string; level: number };
    log.info(
      {
        snapshotId,
        algorithm,
        level,
        ms: Math.round(performance.now() - began),
        uncompressedBytes: uncompressed,
        compressedBytes: imageBytes,
        sizeBytes: completed.snapshot.size_bytes,
      },
      "snapshot compressed",
    );
    return "compressed" as const;
  });
}

/**
 * After a failure, in this order: a record that already says compressed is announced again (its image is the
 * memory now); a deleted snapshot stops quietly; a shutdown, or a transient error with attempts left, throws so the
 * job runs again; anything else (codec errors: a full disk, an unreadable payload) marks the snapshot error, raw
 * payload kept.
 */
async function recover(
  deps: CompressSnapshotDeps,
  snapshotId: string,
  error: unknown,
  files: ImageFiles,
  context: { signal: AbortSignal; isLastAttempt: boolean; deleted: AbortSignal },
): Promise<CompressOutcome> {
  const { store, log } = deps;
  const current = await store.read(snapshotId).catch(() => undefined);
  if (current?.snapshot.compression_state === "compressed") {
    // The record already points at the compressed file (a step after its write failed, e.g. the event append,
    // or another run finished first): removing it would lose the snapshot's memory. Report the outcome again.
    log.warn({ snapshotId, err: (error as Error).message }, "compression finished but a later step failed");
    await publishSnapshotRecord(deps.events, current);
    return "compressed";
  }
  await removeImage(files.destination).catch(() => {});
  if (context.deleted.aborted || !(await store.read(snapshotId))) {
    log.info({ snapshotId }, "snapshot deleted during compression: stopped");
    return "skipped";
  }
  if (context.signal.aborted) throw error; // shutdown: the job is retried by the next worker
  if (!(error instanceof CodecError) && !context.isLastAttempt) throw error;
  const message = error instanceof Error ? error.message : String(error);
  await store.withLock(snapshotId, async () => {
    const record = await store.read(snapshotId);
    if (record) {
      await setState(
        deps,
        record,
        { compression_state: "error", compression_error: message },
        "snapshot.compression.failed",
      );
    }
  });
  log.warn({ snapshotId, err: message }, "compression failed: raw payload kept");
  return "error";
}

async function setState(
  deps: CompressSnapshotDeps,
  record: SnapshotRecord,
  changes: Partial<Snapshot>,
  type: "snapshot.compression.started" | "snapshot.compression.completed" | "snapshot.compression.failed",
  options: { afterWrite?: () => Promise<void>; crashAt?: CrashPoint } = {},
): Promise<SnapshotRecord> {
  const next: SnapshotRecord = {
    ...record,
    snapshot: { ...record.snapshot, ...changes },
    ...nextStamp(record, type, null),
  };
  // Counts the compressed file once the state says compressed, whatever raw file is still around.
  next.snapshot.size_bytes = await deps.store.storedBytes(next);
  await deps.store.write(next);
  await options.afterWrite?.();
  if (options.crashAt) crashPoint(options.crashAt);
  await publishSnapshotRecord(deps.events, next);
  return next;
}

async function reportProgress(deps: CompressSnapshotDeps, snapshotId: string, done: number, total: number) {
  const record = await deps.store.read(snapshotId);
  if (!record) throw new SnapshotGoneError(`snapshot ${snapshotId} was deleted`);
  // Progress changes nothing in the record: it carries the record's version, so the read model keeps what it has.
  await deps.events.append(
    "snapshot.compression.progress",
    subjectOf.snapshot(snapshotId),
    { snapshot: record.snapshot, bytes_done: done, bytes_total: total },
    { version: record.version },
  );
}

/** A squashfs image and its checksum list. */
async function removeImage(image: string): Promise<void> {
  await Promise.all([image, checksumsFile(image)].map((file) => rm(file, { force: true })));
}

/** Temporary outputs of attempts that died mid-write (kill -9, power loss): see shared/temp-names.ts. */
async function removeTemporaries(directory: string, name: string): Promise<void> {
  for (const entry of await readdir(directory).catch(() => [] as string[])) {
    if (isTemporaryOf(name, entry)) await rm(path.join(directory, entry), { force: true });
  }
}
