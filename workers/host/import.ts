// Imports a snapshot archive (shared/snapshots/archive.ts) streamed in from the API as a new snapshot on this host.
// Everything lands in a staging directory first; the record against the request limits, the manifest's sha256s,
// every declared size, every seek-table chunk checksum, and a squashfs image's structure and every piece of it are
// checked before the snapshot's directory, record and event exist. Any failure is a 400 naming what is wrong and
// leaves nothing behind; an id that exists is a 409 and is never touched; a full host is a 507.
import { createHash } from "node:crypto";
import { createWriteStream, existsSync, readFileSync } from "node:fs";
import { mkdir, rm, unlink } from "node:fs/promises";
import path from "node:path";
import { type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { extract, type Extract as TarExtract } from "tar-stream";
import { ZodError } from "zod";
import { CodecError, decompressFile, readCompressedHeader } from "../../shared/codec/index.ts";
import { ApiError, conflict } from "../../shared/errors.ts";
import type { EventStream } from "../../shared/events/stream.ts";
import { commitStagedDirectory } from "../../shared/files.ts";
import { nextStamp } from "../../shared/host-records.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import {
  ARCHIVE_MANIFEST,
  ARCHIVE_MANIFEST_ENTRY,
  ARCHIVE_PAYLOAD_ENTRIES,
  ARCHIVE_RECORD,
  ARCHIVE_RECORD_ENTRY,
  type ArchiveManifest,
  SEEKABLE_SUFFIX,
} from "../../shared/snapshots/archive.ts";
import { expectedImage, payloadEntries, payloadSizeProblem } from "../../shared/snapshots/export-files.ts";
import {
  COMPRESSED_SUFFIX,
  isStoredAsImage,
  payloadFiles,
  publishSnapshotRecord,
  type SnapshotRecord,
  type SnapshotStore,
} from "../../shared/snapshots/store.ts";
import { ImageIntegrityError, verifyImage } from "../../shared/squashfs/checksums.ts";
import { checkImageStructure } from "../../shared/squashfs/inspect.ts";
import { assertFreeSpace } from "../../shared/storage/free-space.ts";
import { stagingPath } from "../../shared/temp-names.ts";

const MAX_JSON_ENTRY_BYTES = 4 * 1024 * 1024;

type TarEntry = TarExtract extends AsyncIterable<infer Entry> ? Entry : never;

/** Imports running on this host at once, at most IMPORT_MAX_CONCURRENT: one more is a 503 before a byte is read. */
export class ImportSlots {
  private running = 0;

  constructor(private readonly max: number) {}

  take(): () => void {
    if (this.running >= this.max) {
      throw new ApiError("unavailable", `this host runs ${this.max} imports already: try again when one ends`);
    }
    this.running++;
    let released = false;
    return () => {
      if (!released) this.running--;
      released = true;
    };
  }
}

export interface ImportDeps {
  hostId: string;
  slots: ImportSlots;
  /** IMPORT_MAX_BYTES: the largest archive this host takes (413 beyond it). */
  maxBytes: number;
  store: SnapshotStore;
  events: EventStream;
  log: Logger;
  /** Queues the upload and the compression an imported snapshot wants (SnapshotManager.queueBackgroundWork). */
  queueBackgroundWork(record: SnapshotRecord): Promise<void>;
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
  gone: AbortSignal = new AbortController().signal,
): Promise<{ snapshot: Snapshot; event_id: string }> {
  let release = () => {};
  try {
    release = deps.slots.take();
    await claimId(deps.store, snapshotId);
  } catch (error) {
    release();
    body.resume(); // read the rest so the caller gets the answer rather than a reset connection
    throw error;
  }
  const started = Date.now();
  deps.log.info({ snapshotId }, "import: receiving the archive");
  // The caller gone: a body still arriving fails at once; a later step stops at its next check (assertCallerThere).
  const onGone = () => body.destroy(gone.reason as Error);
  gone.addEventListener("abort", onGone, { once: true });
  try {
    return await importClaimed(deps, snapshotId, body, gone);
  } catch (error) {
    deps.log.warn({ snapshotId, ms: Date.now() - started, err: (error as Error).message }, "import refused");
    throw error;
  } finally {
    gone.removeEventListener("abort", onGone);
    release();
  }
}

function assertCallerThere(gone: AbortSignal): void {
  if (gone.aborted) throw new ApiError("unavailable", `import abandoned: ${(gone.reason as Error).message}`);
}

const stagingDir = (store: SnapshotStore, snapshotId: string) => stagingPath(store.root, "import", snapshotId);

/**
 * Makes the import's staging directory, which claims the id: a second import of it fails here (409), and so does an
 * id a snapshot of this host has. Nothing that exists is removed.
 */
async function claimId(store: SnapshotStore, snapshotId: string): Promise<void> {
  await mkdir(store.root, { recursive: true });
  try {
    await mkdir(stagingDir(store, snapshotId));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    throw conflict(`an import of snapshot ${snapshotId} is already running on this host`);
  }
  if (existsSync(store.dir(snapshotId))) {
    await rm(stagingDir(store, snapshotId), { recursive: true, force: true });
    throw conflict(`snapshot ${snapshotId} exists on this host`);
  }
}

/** The import once its id is claimed: on failure it removes only what it made (staging, then the new snapshot). */
async function importClaimed(
  deps: ImportDeps,
  snapshotId: string,
  body: Readable,
  gone: AbortSignal,
): Promise<{ snapshot: Snapshot; event_id: string }> {
  const staging = stagingDir(deps.store, snapshotId);
  try {
    const received = await receiveEntries(body, staging, deps);
    assertCallerThere(gone);
    const bytes = [...received.values()].reduce((sum, entry) => sum + entry.size, 0);
    deps.log.info({ snapshotId, entries: received.size, bytes }, "import: received, verifying");
    const record = await verifiedRecord(staging, received);
    await unlink(path.join(staging, ARCHIVE_RECORD_ENTRY));
    await unlink(path.join(staging, ARCHIVE_MANIFEST_ENTRY));
    const installed = await installPayload(
      deps.store,
      deps.hostId,
      staging,
      record,
      { id: snapshotId, host_id: deps.hostId, name: null },
      { ...nextStamp(undefined, "snapshot.created", null), replica_of: undefined },
      () => assertCallerThere(gone),
    );
    const { snapshot } = installed;
    const eventId = await publishSnapshotRecord(deps.events, installed);
    await deps.queueBackgroundWork(installed);
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

/** Reads every entry into `staging`, hashing as it goes, within `maxBytes` in all and the free space left. */
async function receiveEntries(
  body: Readable,
  staging: string,
  { maxBytes, hostId }: ImportDeps,
): Promise<Map<string, ReceivedEntry>> {
  const allowed = new Set([ARCHIVE_RECORD_ENTRY, ARCHIVE_MANIFEST_ENTRY, ...ARCHIVE_PAYLOAD_ENTRIES]);
  const received = new Map<string, ReceivedEntry>();
  let total = 0;
  const entries = extract();
  body.on("error", (error) => entries.destroy(error));
  body.pipe(entries);
  try {
    for await (const entry of entries) {
      const name = entry.header.name;
      if (entry.header.type !== "file" || !allowed.has(name)) throw invalid(`unexpected entry ${name}`);
      if (received.has(name)) throw invalid(`entry ${name} appears twice`);
      if (received.has(ARCHIVE_MANIFEST_ENTRY)) throw invalid(`entry ${name} follows the manifest`);
      total += entry.header.size ?? 0;
      if (total > maxBytes) throw tooLarge(maxBytes);
      // The entry is read at once, its free-space check inside its pipeline: tar-stream never ends an entry it was
      // not reading when the body ended right after the entry's header, and the import would wait forever.
      const roomFor = () => assertFreeSpace(staging, entry.header.size ?? 0, hostId);
      received.set(name, await receiveEntry(entry, path.join(staging, name), name, roomFor));
    }
  } catch (error) {
    if (error instanceof ApiError) throw error;
    const reason = (error as Error).message;
    throw invalid(/Unexpected end/.test(reason) ? "it ends in the middle of an entry (truncated)" : reason, error);
  }
  return received;
}

async function receiveEntry(
  entry: TarEntry,
  file: string,
  name: string,
  beforeFirstByte: () => Promise<void>,
): Promise<ReceivedEntry> {
  const hash = createHash("sha256");
  let size = 0;
  const isJson = !ARCHIVE_PAYLOAD_ENTRIES.includes(name);
  let checked = false;
  const take = (chunk: Buffer): Buffer => {
    size += chunk.length;
    if (isJson && size > MAX_JSON_ENTRY_BYTES) throw invalid(`${name} is larger than ${MAX_JSON_ENTRY_BYTES} bytes`);
    hash.update(chunk);
    return chunk;
  };
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      const ready = checked ? Promise.resolve() : beforeFirstByte();
      checked = true;
      ready
        .then(() => take(chunk))
        .then(
          (passed) => callback(null, passed),
          (error: Error) => callback(error),
        );
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
  const record = parseJsonEntry(staging, ARCHIVE_RECORD_ENTRY, ARCHIVE_RECORD);
  const expected = payloadEntries(record);
  for (const name of expected)
    if (!received.has(name)) throw invalid(`${name} is missing for a ${record.memory_layout} layout`);
  for (const name of received.keys()) {
    if (ARCHIVE_PAYLOAD_ENTRIES.includes(name) && !expected.includes(name))
      throw invalid(`${name} does not belong to this snapshot`);
  }
  return record;
}

const tooLarge = (maxBytes: number) =>
  new ApiError(
    "invalid_request",
    `invalid snapshot archive: it is larger than this host's limit of ${maxBytes} bytes`,
    {
      status: 413,
    },
  );

function parseJsonEntry<T>(staging: string, name: string, schema: { parse(value: unknown): T }): T {
  try {
    return schema.parse(JSON.parse(readFileSync(path.join(staging, name), "utf8")));
  } catch (error) {
    throw invalid(`${name} is not valid: ${describeProblem(error).slice(0, 300)}`, error);
  }
}

/** A schema failure as `field.path: message; …` (a JSON syntax error as it is). */
function describeProblem(error: unknown): string {
  if (!(error instanceof ZodError)) return (error as Error).message;
  return error.issues.map((issue) => `${issue.path.map(pathPart).join(".")}: ${issue.message}`).join("; ");
}

/** A field name as it is when plain, else quoted and escaped: a message never carries a NUL or a control character. */
const pathPart = (part: PropertyKey) => (/^[\w-]+$/.test(String(part)) ? String(part) : JSON.stringify(String(part)));

/**
 * Decodes every `<payload>.sfc` in `staging` (which checks each chunk against its seek table), verifies a compressed
 * memory payload's squashfs image against its checksum list (it stays compressed, as stored), and moves the result
 * into place as snapshot `overrides.id`. Imports and replicas both install through here.
 */
export async function installPayload(
  store: SnapshotStore,
  hostId: string,
  staging: string,
  record: SnapshotRecord,
  overrides: Partial<Snapshot> & { id: string },
  recordOverrides: Partial<SnapshotRecord> = {},
  /** Throws to stop before each payload and before the commit (an import whose caller is gone). */
  checkpoint: () => void = () => {},
): Promise<SnapshotRecord> {
  const snapshotId = overrides.id;
  const keepCompressed = record.snapshot.compression_state === "compressed";
  await decodeStagedPayload(staging, record, hostId, checkpoint);
  const imported: SnapshotRecord = {
    ...record,
    snapshot: {
      ...record.snapshot,
      compression_state: keepCompressed ? "compressed" : "none",
      compression_error: null,
      compressed_size_bytes: keepCompressed ? record.snapshot.compressed_size_bytes : null,
      uncompressed_size_bytes: keepCompressed ? record.snapshot.uncompressed_size_bytes : null,
      // Where the exporter kept it says nothing of here: this copy is local until this host uploads it.
      storage: "local",
      storage_error: null,
      ...overrides,
    },
    evicted_at: undefined, // its payload is here
    ...recordOverrides,
  };
  checkpoint();
  await commitStagedDirectory(staging, store.dir(snapshotId));
  imported.snapshot.size_bytes = await store.storedBytes(imported);
  await store.write(imported);
  return imported;
}

/**
 * Puts the payload entries staged for `record` in the form a snapshot directory holds them: each `<payload>.sfc`
 * decoded (every chunk checked against its seek table) into its raw file and removed; a compressed memory payload's
 * squashfs image verified against its checksum list and kept as it is.
 */
export async function decodeStagedPayload(
  staging: string,
  record: SnapshotRecord,
  hostId: string,
  checkpoint: () => void = () => {},
): Promise<void> {
  for (const name of payloadFiles(record)) {
    checkpoint();
    if (isStoredAsImage(record, name)) {
      const image = path.join(staging, `${name}${COMPRESSED_SUFFIX}`);
      await verifyImage(image);
      await checkImageStructure(image, expectedImage(record, name));
      continue;
    }
    const seekable = path.join(staging, `${name}${SEEKABLE_SUFFIX}`);
    await decodeEntry(seekable, path.join(staging, name), { name, record, hostId });
    await unlink(seekable);
  }
}

/** Decodes one payload once the size its seek table declares fits the record and the free space. */
async function decodeEntry(
  seekable: string,
  raw: string,
  { name, record, hostId }: { name: string; record: SnapshotRecord; hostId: string },
): Promise<void> {
  try {
    const { uncompressedSize } = await readCompressedHeader(seekable);
    const problem = payloadSizeProblem(record, name, uncompressedSize);
    if (problem) throw invalid(`${name}${SEEKABLE_SUFFIX} ${problem}`);
    await assertFreeSpace(path.dirname(raw), uncompressedSize, hostId);
    await decompressFile(seekable, raw);
  } catch (error) {
    if (error instanceof CodecError) throw invalid(`${name}${SEEKABLE_SUFFIX}: ${error.message}`, error);
    throw error;
  }
}
