// Imports a snapshot archive (shared/snapshots/archive.ts) streamed in from the API as a new snapshot on this host.
// Everything lands in a staging directory first; the manifest's sha256s, every seek-table chunk checksum and every
// piece of a squashfs image against its checksum list are checked before the snapshot's directory, record and event exist. Any failure is a 400 naming what is wrong and
// leaves nothing behind.
import { createHash } from "node:crypto";
import { createWriteStream, readFileSync } from "node:fs";
import { mkdir, rm, unlink } from "node:fs/promises";
import path from "node:path";
import { type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { extract, type Extract as TarExtract } from "tar-stream";
import { CodecError, decompressFile } from "../../shared/codec/index.ts";
import { ApiError } from "../../shared/errors.ts";
import type { EventStream } from "../../shared/events/stream.ts";
import { commitStagedDirectory } from "../../shared/files.ts";
import { nextStamp } from "../../shared/host-records.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import {
  ARCHIVE_MANIFEST,
  ARCHIVE_MANIFEST_ENTRY,
  ARCHIVE_PAYLOAD_ENTRIES,
  ARCHIVE_RECORD_ENTRY,
  type ArchiveManifest,
  SEEKABLE_SUFFIX,
} from "../../shared/snapshots/archive.ts";
import {
  COMPRESSED_SUFFIX,
  isStoredAsImage,
  payloadFiles,
  publishSnapshotRecord,
  SNAPSHOT_RECORD,
  type SnapshotRecord,
  type SnapshotStore,
} from "../../shared/snapshots/store.ts";
import { ImageIntegrityError, verifyImage } from "../../shared/squashfs/checksums.ts";
import { stagingPath } from "../../shared/temp-names.ts";
import { payloadEntries } from "./export-files.ts";

const MAX_JSON_ENTRY_BYTES = 4 * 1024 * 1024;

type TarEntry = TarExtract extends AsyncIterable<infer Entry> ? Entry : never;

export interface ImportDeps {
  hostId: string;
  store: SnapshotStore;
  events: EventStream;
  log: Logger;
  /** Queues compression for a snapshot that wants it (SnapshotManager.queueCompression). */
  queueCompression(snapshotId: string): Promise<void>;
}

interface ReceivedEntry {
  size: number;
  sha256: string;
}

const invalid = (message: string, cause?: unknown) =>
  new ApiError("invalid_request", `invalid snapshot archive: ${message}`, { cause });

export async function importSnapshotArchive(
  deps: ImportDeps,
  snapshotId: string,
  body: Readable,
): Promise<{ snapshot: Snapshot; event_id: string }> {
  const staging = stagingPath(deps.store.root, "import", snapshotId);
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  try {
    const received = await receiveEntries(body, staging);
    const record = await verifiedRecord(staging, received);
    await unlink(path.join(staging, ARCHIVE_RECORD_ENTRY));
    await unlink(path.join(staging, ARCHIVE_MANIFEST_ENTRY));
    const installed = await installPayload(
      deps.store,
      staging,
      record,
      { id: snapshotId, host_id: deps.hostId, name: null },
      { ...nextStamp(undefined, "snapshot.created", null), replica_of: undefined },
    );
    const { snapshot } = installed;
    const eventId = await publishSnapshotRecord(deps.events, installed);
    if (snapshot.compression.enabled && snapshot.compression_state === "none") {
      await deps.queueCompression(snapshotId).catch(() => {}); // the compression reconcile catches up
    }
    deps.log.info({ snapshotId, sizeBytes: snapshot.size_bytes }, "snapshot imported");
    return { snapshot, event_id: eventId };
  } catch (error) {
    body.resume(); // read the rest so the caller gets the answer rather than a reset connection
    await rm(staging, { recursive: true, force: true });
    await rm(deps.store.dir(snapshotId), { recursive: true, force: true });
    await rm(deps.store.cacheDir(snapshotId), { recursive: true, force: true });
    if (error instanceof CodecError || error instanceof ImageIntegrityError) throw invalid(error.message, error);
    throw error;
  }
}

/** Reads every entry into `staging`, hashing as it goes. */
async function receiveEntries(body: Readable, staging: string): Promise<Map<string, ReceivedEntry>> {
  const allowed = new Set([ARCHIVE_RECORD_ENTRY, ARCHIVE_MANIFEST_ENTRY, ...ARCHIVE_PAYLOAD_ENTRIES]);
  const received = new Map<string, ReceivedEntry>();
  const entries = extract();
  body.on("error", (error) => entries.destroy(error));
  body.pipe(entries);
  try {
    for await (const entry of entries) {
      const name = entry.header.name;
      if (entry.header.type !== "file" || !allowed.has(name)) throw invalid(`unexpected entry ${name}`);
      if (received.has(name)) throw invalid(`entry ${name} appears twice`);
      if (received.has(ARCHIVE_MANIFEST_ENTRY)) throw invalid(`entry ${name} follows the manifest`);
      received.set(name, await receiveEntry(entry, path.join(staging, name), name));
    }
  } catch (error) {
    if (error instanceof ApiError) throw error;
    const reason = (error as Error).message;
    throw invalid(/Unexpected end/.test(reason) ? "it ends in the middle of an entry (truncated)" : reason, error);
  }
  return received;
}

async function receiveEntry(entry: TarEntry, file: string, name: string): Promise<ReceivedEntry> {
  const hash = createHash("sha256");
  let size = 0;
  const isJson = !ARCHIVE_PAYLOAD_ENTRIES.includes(name);
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      size += chunk.length;
      if (isJson && size > MAX_JSON_ENTRY_BYTES)
        return callback(invalid(`${name} is larger than ${MAX_JSON_ENTRY_BYTES} bytes`));
      hash.update(chunk);
      callback(null, chunk);
    },
  });
  await pipeline(entry, counter, createWriteStream(file));
  return { size, sha256: hash.digest("hex") };
}

/** The manifest must list exactly the other entries with their sizes and hashes; the record must fit its layout. */
async function verifiedRecord(staging: string, received: Map<string, ReceivedEntry>): Promise<SnapshotRecord> {
  if (!received.has(ARCHIVE_MANIFEST_ENTRY)) throw invalid(`${ARCHIVE_MANIFEST_ENTRY} is missing (truncated?)`);
  const manifest: ArchiveManifest = parseJsonEntry(staging, ARCHIVE_MANIFEST_ENTRY, ARCHIVE_MANIFEST);
  const listed = new Set(manifest.entries.map((entry) => entry.name));
  for (const name of received.keys()) {
    if (name !== ARCHIVE_MANIFEST_ENTRY && !listed.has(name)) throw invalid(`${name} is not in the manifest`);
  }
  for (const entry of manifest.entries) {
    const got = received.get(entry.name);
    if (!got) throw invalid(`${entry.name} is in the manifest but not in the archive`);
    if (got.size !== entry.size)
      throw invalid(`${entry.name} holds ${got.size} bytes, the manifest says ${entry.size}`);
    if (got.sha256 !== entry.sha256) throw invalid(`${entry.name} is damaged: its sha256 differs from the manifest's`);
  }
  const record = parseJsonEntry(staging, ARCHIVE_RECORD_ENTRY, SNAPSHOT_RECORD);
  const expected = payloadEntries(record);
  for (const name of expected)
    if (!received.has(name)) throw invalid(`${name} is missing for a ${record.memory_layout} layout`);
  for (const name of received.keys()) {
    if (ARCHIVE_PAYLOAD_ENTRIES.includes(name) && !expected.includes(name))
      throw invalid(`${name} does not belong to this snapshot`);
  }
  return record;
}

function parseJsonEntry<T>(staging: string, name: string, schema: { parse(value: unknown): T }): T {
  try {
    return schema.parse(JSON.parse(readFileSync(path.join(staging, name), "utf8")));
  } catch (error) {
    throw invalid(`${name} is not valid: ${(error as Error).message.slice(0, 300)}`, error);
  }
}

/**
 * Decodes every `<payload>.sfc` in `staging` (which checks each chunk against its seek table), verifies a compressed
 * memory payload's squashfs image against its checksum list (it stays compressed, as stored), and moves the result
 * into place as snapshot `overrides.id`. Imports and replicas both install through here.
 */
export async function installPayload(
  store: SnapshotStore,
  staging: string,
  record: SnapshotRecord,
  overrides: Partial<Snapshot> & { id: string },
  recordOverrides: Partial<SnapshotRecord> = {},
): Promise<SnapshotRecord> {
  const snapshotId = overrides.id;
  const keepCompressed = record.snapshot.compression_state === "compressed";
  for (const name of payloadFiles(record)) {
    if (isStoredAsImage(record, name)) {
      await verifyImage(path.join(staging, `${name}${COMPRESSED_SUFFIX}`));
      continue;
    }
    const seekable = path.join(staging, `${name}${SEEKABLE_SUFFIX}`);
    await decodeEntry(seekable, path.join(staging, name), name);
    await unlink(seekable);
  }
  const imported: SnapshotRecord = {
    ...record,
    snapshot: {
      ...record.snapshot,
      compression_state: keepCompressed ? "compressed" : "none",
      compression_error: null,
      compressed_size_bytes: keepCompressed ? record.snapshot.compressed_size_bytes : null,
      uncompressed_size_bytes: keepCompressed ? record.snapshot.uncompressed_size_bytes : null,
      ...overrides,
    },
    ...recordOverrides,
  };
  await commitStagedDirectory(staging, store.dir(snapshotId));
  imported.snapshot.size_bytes = await store.storedBytes(imported);
  await store.write(imported);
  return imported;
}

async function decodeEntry(seekable: string, raw: string, name: string): Promise<void> {
  try {
    await decompressFile(seekable, raw);
  } catch (error) {
    if (error instanceof CodecError) throw invalid(`${name}${SEEKABLE_SUFFIX}: ${error.message}`, error);
    throw error;
  }
}
