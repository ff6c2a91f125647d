// A snapshot's payload files as exports and other hosts get them: raw files in their portable, seekable form (.sfc),
// compressed once (zstd 1) into the snapshot's cache directory, which a snapshot delete removes with the rest; a
// compressed memory payload as stored, its squashfs image and the image's checksum list (.sqfs, .sqfs.sums).
import { existsSync } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { touchCacheEntry } from "../cache-budget.ts";
import { compressFile } from "../codec/index.ts";
import { ApiError, notFound } from "../errors.ts";
import { parseSize } from "../schemas/common.ts";
import { ImageIntegrityError } from "../squashfs/checksums.ts";
import type { ExpectedImage } from "../squashfs/inspect.ts";
import { EXPORT_COMPRESSION, type ExportListing, imageEntries, SEEKABLE_SUFFIX } from "./archive.ts";
import {
  DEVICE_STATE_FILE,
  DISK_FILE,
  isStoredAsImage,
  MEMORY_FILE,
  payloadFiles,
  type SnapshotRecord,
  type SnapshotStore,
} from "./store.ts";

/** The one file a record's stored image holds: its payload file, of its uncompressed size (within payloadSizeProblem). */
export function expectedImage(record: SnapshotRecord, name: string): ExpectedImage {
  const size = record.snapshot.uncompressed_size_bytes;
  if (size === null) throw new ImageIntegrityError(`snapshot ${record.snapshot.id} records no uncompressed size`);
  const problem = payloadSizeProblem(record, name, size);
  if (problem) throw new ImageIntegrityError(`snapshot ${record.snapshot.id}: its ${name} image ${problem}`);
  return { name, size };
}

/** A device-state stream holds the RAM (stream layout) plus the devices' state: at most this much beyond the RAM. */
const DEVICE_STATE_EXTRA_BYTES = 256 * 1024 ** 2;

/**
 * What is wrong with raw payload file `name` of `bytes` bytes for this record, or undefined: the disk is the source's
 * overlay size, memory.raw its RAM size, and a device-state stream at most its RAM plus DEVICE_STATE_EXTRA_BYTES.
 */
export function payloadSizeProblem(record: SnapshotRecord, name: string, bytes: number): string | undefined {
  const memoryBytes = parseSize(record.source.size)!;
  if (name === DISK_FILE && bytes !== parseSize(record.source.overlay_size))
    return `declares ${bytes} bytes for a disk of ${record.source.overlay_size}`;
  if (name === MEMORY_FILE && bytes !== memoryBytes) return `declares ${bytes} bytes for ${record.source.size} of RAM`;
  if (name === DEVICE_STATE_FILE && bytes > memoryBytes + DEVICE_STATE_EXTRA_BYTES)
    return `declares ${bytes} bytes of device state for ${record.source.size} of RAM`;
  return undefined;
}

/** The entries that carry a record's payload, in archive order. */
export function payloadEntries(record: SnapshotRecord): string[] {
  return payloadFiles(record).flatMap((name) =>
    isStoredAsImage(record, name) ? imageEntries(name) : [`${name}${SEEKABLE_SUFFIX}`],
  );
}

/** Where entry `entry` of this record is (or will be); undefined when the record has no such entry. */
export function exportPath(store: SnapshotStore, record: SnapshotRecord, entry: string): string | undefined {
  if (!payloadEntries(record).includes(entry)) return undefined;
  return entryPath(store, record.snapshot.id, entry);
}

/**
 * Where a payload entry's file is kept, whatever the snapshot's record says now: a listing made before a compression
 * finished names the raw memory's seekable form, which stays in the cache after the record moved on to the image.
 */
export function entryPath(store: SnapshotStore, snapshotId: string, entry: string): string {
  return entry.endsWith(SEEKABLE_SUFFIX) ? store.cacheFile(snapshotId, entry) : store.file(snapshotId, entry);
}

/** The record and its entries' files, making the seekable forms that are missing. */
export async function prepareExport(store: SnapshotStore, snapshotId: string): Promise<ExportListing> {
  return store.withLock(snapshotId, async () => {
    const record = await store.read(snapshotId);
    if (!record) throw notFound("snapshot", snapshotId);
    // Evicted to the object store (workers/host/replicas.ts): the host agent pulls it back before it serves it.
    if (record.evicted_at) {
      throw new ApiError(
        "unavailable",
        `snapshot ${snapshotId}'s payload is in the object store only, not on this disk`,
      );
    }
    const files: ExportListing["files"] = [];
    for (const entry of payloadEntries(record)) {
      const target = exportPath(store, record, entry)!;
      if (entry.endsWith(SEEKABLE_SUFFIX) && !existsSync(target)) {
        await mkdir(path.dirname(target), { recursive: true });
        await compressFile(store.file(snapshotId, entry.slice(0, -SEEKABLE_SUFFIX.length)), target, EXPORT_COMPRESSION);
      }
      files.push({ name: entry, size: (await stat(target)).size });
    }
    // Its cache entry was used now: the cache budget evicts least recently used entries first.
    await touchCacheEntry(store.cacheDir(snapshotId));
    return { record, files };
  });
}
