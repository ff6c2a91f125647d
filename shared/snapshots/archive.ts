// The portable snapshot archive (GET /snapshots/{id}/export, POST /snapshots/import): a plain ustar file holding
//   snapshot.json   the host's record (the snapshot, its source instance, its memory layout);
//   <payload>.sfc   every payload file in the codec's seekable form (shared/codec): independent zstd/lz4 frames
//                   plus a seek table in skippable frames, so `zstd -d` / `lz4 -d` restore the raw file, and zero
//                   chunks (sparse regions) cost a few bytes and come back as holes;
//   manifest.json   last: the format and every other entry's size and sha256.
// An importer checks the manifest's hashes and every chunk checksum of the seek tables before the snapshot exists.
import { z } from "../zod.ts";
import { COMPRESSED_SUFFIX, DEVICE_STATE_FILE, DISK_FILE, MEMORY_FILE } from "./store.ts";

export const ARCHIVE_FORMAT = "snapfleet-snapshot/1";
export const ARCHIVE_RECORD_ENTRY = "snapshot.json";
export const ARCHIVE_MANIFEST_ENTRY = "manifest.json";
/** Payload entries an archive may hold. */
export const ARCHIVE_PAYLOAD_ENTRIES = [DISK_FILE, DEVICE_STATE_FILE, MEMORY_FILE].map(
  (name) => `${name}${COMPRESSED_SUFFIX}`,
);
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

/** What a host's payload server lists for an export: the record and the files to put in the archive, in order. */
export const EXPORT_LISTING = z.object({
  record: z.unknown(),
  files: z.array(z.object({ name: z.string(), size: z.number().int().nonnegative() })),
});
export type ExportListing = z.infer<typeof EXPORT_LISTING>;
