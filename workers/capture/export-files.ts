// A snapshot's payload files in their portable, seekable form (.sfc): what the payload server serves for exports and
// for other hosts. A compressed memory payload is served as stored; raw files are compressed once (zstd 1) into the
// snapshot's cache directory, which a snapshot delete removes with the rest.
import { existsSync } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { compressFile } from "../../shared/codec/index.ts";
import { notFound } from "../../shared/errors.ts";
import { EXPORT_COMPRESSION, type ExportListing } from "../../shared/snapshots/archive.ts";
import {
  COMPRESSED_SUFFIX,
  DEVICE_STATE_FILE,
  DISK_FILE,
  MEMORY_FILE,
  type SnapshotRecord,
  type SnapshotStore,
} from "../../shared/snapshots/store.ts";

/** The raw payload files a record holds, in archive order. */
export function payloadFiles(record: SnapshotRecord): string[] {
  if (record.memory_layout === "none") return [DISK_FILE];
  return record.memory_layout === "file" ? [DISK_FILE, DEVICE_STATE_FILE, MEMORY_FILE] : [DISK_FILE, DEVICE_STATE_FILE];
}

/** Where the seekable form of payload file `name` is (or will be) for this record. */
export function exportPath(store: SnapshotStore, record: SnapshotRecord, name: string): string {
  const id = record.snapshot.id;
  const stored = name === record.memory_payload && record.snapshot.compression_state === "compressed";
  return stored ? store.file(id, `${name}${COMPRESSED_SUFFIX}`) : store.cacheFile(id, `${name}${COMPRESSED_SUFFIX}`);
}

/** The record and its files in seekable form, making the ones that are missing. */
export async function prepareExport(store: SnapshotStore, snapshotId: string): Promise<ExportListing> {
  return store.withLock(snapshotId, async () => {
    const record = await store.read(snapshotId);
    if (!record) throw notFound("snapshot", snapshotId);
    const files: ExportListing["files"] = [];
    for (const name of payloadFiles(record)) {
      const target = exportPath(store, record, name);
      if (!existsSync(target)) {
        await mkdir(path.dirname(target), { recursive: true });
        await compressFile(store.file(snapshotId, name), target, EXPORT_COMPRESSION);
      }
      files.push({ name: `${name}${COMPRESSED_SUFFIX}`, size: (await stat(target)).size });
    }
    return { record, files };
  });
}
