// The portable snapshot archive (GET /snapshots/{id}/export, POST /snapshots/import): a plain ustar file holding
//   snapshot.json   the host's record (the snapshot, its source instance, its memory layout);
//   <payload>.sfc   every raw payload file in the codec's seekable form (shared/codec): independent zstd/lz4 frames
//                   plus a seek table in skippable frames, so `zstd -d` / `lz4 -d` restore the raw file, and zero
//                   chunks (sparse regions) cost a few bytes and come back as holes;
//   <payload>.sqfs and <payload>.sqfs.sums
//                   a compressed memory payload as stored: the squashfs image (`unsquashfs` restores the raw file)
//                   and its XXH64 checksum list (shared/squashfs);
//   manifest.json   last: the format and every other entry's size and sha256.
// An importer checks the manifest's hashes, every chunk checksum of the seek tables and every piece of an image
// against its checksum list before the snapshot exists.

import { RESOURCE_ID, RESOURCE_NAME, TAGS } from "../schemas/common.ts";
import { COMPRESSION_CONFIG } from "../schemas/compression.ts";
import { MEMORY_LIMITS, RUNNABLE_INSTANCE } from "../schemas/instance.ts";
import { SNAPSHOT_SCHEMA } from "../schemas/snapshot.ts";
import { checksumsFile } from "../squashfs/checksums.ts";
import { z } from "../zod.ts";
import { COMPRESSED_SUFFIX, DEVICE_STATE_FILE, DISK_FILE, MEMORY_FILE, SNAPSHOT_RECORD } from "./store.ts";

/** A raw payload file in the codec's seekable form, as exports and transfers carry it. */
export const SEEKABLE_SUFFIX = ".sfc";
/** A compressed memory payload's squashfs image and its checksum list, carried as stored. */
export function imageEntries(name: string): string[] {
  const image = `${name}${COMPRESSED_SUFFIX}`;
  return [image, checksumsFile(image)];
}

export const ARCHIVE_FORMAT = "snapfleet-snapshot/1";
export const ARCHIVE_RECORD_ENTRY = "snapshot.json";
export const ARCHIVE_MANIFEST_ENTRY = "manifest.json";
/** Payload entries an archive may hold. */
export const ARCHIVE_PAYLOAD_ENTRIES = [
  ...[DISK_FILE, DEVICE_STATE_FILE, MEMORY_FILE].map((name) => `${name}${SEEKABLE_SUFFIX}`),
  ...[DEVICE_STATE_FILE, MEMORY_FILE].flatMap(imageEntries),
];
/** How raw payload files are put into their seekable form for export. */
export const EXPORT_COMPRESSION = { algorithm: "zstd", level: 1 } as const;

export const ARCHIVE_MANIFEST = z.object({
  format: z.literal(ARCHIVE_FORMAT),
  entries: z.array(
    z.object({
      name: z.string(),
      size: z.number().int().nonnegative(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  ),
});
export type ArchiveManifest = z.infer<typeof ARCHIVE_MANIFEST>;

/** QEMU's version and machine type as a host reports them: short, plain words. */
const QEMU_WORD = z
  .string()
  .regex(/^[A-Za-z0-9._+-]{1,64}$/)
  .nullable()
  .optional();
/** The largest payload size a record may declare: a device-state stream holds at most the RAM plus device state. */
const MAX_DECLARED_BYTES = 2 * MEMORY_LIMITS.max;

/**
 * A record that came from outside (an archive, another host): the stored shape held to the request limits, so no
 * imported field is anything a request could not have made (names, tags, ids, image, sizes, vCPUs).
 */
export const ARCHIVE_RECORD = SNAPSHOT_RECORD.extend({
  snapshot: SNAPSHOT_SCHEMA.extend({
    id: RESOURCE_ID,
    name: RESOURCE_NAME.nullable(),
    tags: TAGS,
    source_instance_id: RESOURCE_ID,
    source_instance_name: RESOURCE_NAME,
    compression: SNAPSHOT_SCHEMA.shape.compression.refine(
      (compression) => COMPRESSION_CONFIG.safeParse(compression).success,
      "compression algorithm or level out of range",
    ),
    compressed_size_bytes: z.number().int().nonnegative().max(MAX_DECLARED_BYTES).nullable(),
    uncompressed_size_bytes: z.number().int().nonnegative().max(MAX_DECLARED_BYTES).nullable(),
    qemu_version: QEMU_WORD,
    machine_type: QEMU_WORD,
  }),
  source: RUNNABLE_INSTANCE,
});

/** What a host's payload server lists for an export: the record and the files to put in the archive, in order. */
export const EXPORT_LISTING = z.object({
  record: z.unknown(),
  files: z.array(
    z.object({
      /** Only the archive's payload entries: a pull writes each file under its staging directory by this name. */
      name: z.enum(ARCHIVE_PAYLOAD_ENTRIES as [string, ...string[]]),
      size: z.number().int().nonnegative(),
      /** Known when the listing comes from the object store's manifest: a resumed pull keeps only matching files. */
      sha256: z.string().optional(),
    }),
  ),
});
export type ExportListing = z.infer<typeof EXPORT_LISTING>;
