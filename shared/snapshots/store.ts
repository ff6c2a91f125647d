// Snapshot payloads on a host: `<DATA_DIR>/snapshots/<id>/` holds the record (snapshot.json) and the payload files.
// The capture and compression workers of a host share it; record changes happen under the snapshot's Redis lock.
import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import type { Redis } from "ioredis";
import { z } from "zod";
import { subjectOf } from "../events/catalog.ts";
import type { EventStream } from "../events/stream.ts";
import { listDirectory, skipUnparsable, writeFileDurable } from "../files.ts";
import { LAST_EVENT } from "../host-records.ts";
import { type Lease, withRedisLock } from "../locks.ts";
import { INSTANCE_SCHEMA } from "../schemas/instance.ts";
import { SNAPSHOT_SCHEMA } from "../schemas/snapshot.ts";
import { checksumsFile } from "../squashfs/checksums.ts";

export const RECORD_FILE = "snapshot.json";
export const DISK_FILE = "disk.raw";
export const MEMORY_FILE = "memory.raw";
export const DEVICE_STATE_FILE = "device-state";
/**
 * A compressed payload is a squashfs image holding the raw file (see shared/squashfs), named after it plus this
 * suffix, with its checksum list beside it (`<image>.sums`).
 */
export const COMPRESSED_SUFFIX = ".sqfs";

/**
 * How guest RAM is stored:
 * - `file`: RAM in memory.raw (the guest's own shared memory file, copied sparsely) + a small device-state stream;
 * - `stream`: RAM inside the device-state stream (captured from a VM that maps its memory privately, e.g. a fork);
 * - `none`: a Stopped snapshot, disk only.
 */
export const MEMORY_LAYOUTS = ["file", "stream", "none"] as const;

export const SNAPSHOT_RECORD = z.object({
  snapshot: SNAPSHOT_SCHEMA,
  /** The source instance as it was at capture: forks take image, size and vcpus from it. */
  source: INSTANCE_SCHEMA,
  memory_layout: z.enum(MEMORY_LAYOUTS),
  /** Which payload file compression applies to (memory.raw or device-state), null for disk-only. */
  memory_payload: z.enum([MEMORY_FILE, DEVICE_STATE_FILE]).nullable(),
  /** Bumped with every change of the record, in the same atomic write (see shared/host-records.ts). */
  version: z.number().int().nonnegative().default(0),
  last_event: LAST_EVENT.nullable().default(null),
  /** Set on a copy pulled from the owning host for forks here (workers/host/replicas.ts): not this host's. */
  replica_of: z.string().optional(),
  /**
   * Set on an original whose payload files were evicted under PAYLOAD_CACHE_BYTES (workers/host/replicas.ts): the
   * object store holds them, and the host pulls them back into this directory before any local use. Not part of the
   * snapshot as readers see it: no version change.
   */
  evicted_at: z.string().optional(),
});

export type SnapshotRecord = z.infer<typeof SNAPSHOT_RECORD>;

export class SnapshotStore {
  constructor(
    readonly dataDir: string,
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  /** Every snapshot's directory, and the dot-named staging directories of captures, imports and pulls. */
  get root(): string {
    return path.join(this.dataDir, "snapshots");
  }

  dir(id: string): string {
    return path.join(this.root, id);
  }

  file(id: string, name: string): string {
    return path.join(this.dir(id), name);
  }

  /**
   * The cache: seekable .sfc copies of raw payloads for exports and pulls, one entry (directory) per snapshot, kept
   * within RAW_CACHE_BUDGET_BYTES (shared/cache-budget).
   */
  get cacheRoot(): string {
    return path.join(this.dataDir, "cache");
  }

  /** The snapshot's entry in the cache, which a snapshot delete removes whole. */
  cacheDir(id: string): string {
    return path.join(this.cacheRoot, id);
  }

  /** A file in the snapshot's cache entry (a seekable copy of one of its raw payload files). */
  cacheFile(id: string, name: string): string {
    return path.join(this.cacheDir(id), name);
  }

  async read(id: string): Promise<SnapshotRecord | undefined> {
    try {
      return SNAPSHOT_RECORD.parse(JSON.parse(await readFile(this.file(id, RECORD_FILE), "utf8")));
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
  }

  /**
   * Every snapshot record this host owns (directories without a record are captures still in progress, or orphans;
   * replicas of other hosts' snapshots are not this host's to announce or compress).
   */
  async list(): Promise<SnapshotRecord[]> {
    return (await this.readAll()).filter((record) => !record.replica_of);
  }

  /** Every copy this host holds of another host's snapshot (workers/host/replicas.ts). */
  async listReplicas(): Promise<SnapshotRecord[]> {
    return (await this.readAll()).filter((record) => record.replica_of);
  }

  /** Every record on this disk: originals and copies. */
  async readAll(): Promise<SnapshotRecord[]> {
    const ids = await listDirectory(this.root);
    const records: SnapshotRecord[] = [];
    for (const id of ids.filter((name) => !name.startsWith("."))) {
      const record = await this.read(id).catch(skipUnparsable);
      if (record) records.push(record);
    }
    return records;
  }

  async write(record: SnapshotRecord): Promise<void> {
    await writeFileDurable(this.file(record.snapshot.id, RECORD_FILE), `${JSON.stringify(record, null, 2)}\n`);
  }

  /**
   * Serialises record changes and payload swaps of one snapshot across this host's workers. The lease is renewed
   * while `operation` runs; a step that removes payload calls its `assertHeld()` first (fencing).
   */
  withLock<T>(id: string, operation: (lease: Lease) => Promise<T>, waitMs = 120_000): Promise<T> {
    return withRedisLock(this.redis, `${this.prefix}:lock:snapshot:${id}`, { ttlMs: 300_000, waitMs }, operation);
  }

  /** Bytes the payload occupies on disk (allocated blocks, so sparse holes do not count). */
  async storedBytes(record: SnapshotRecord): Promise<number> {
    let total = 0;
    for (const name of payloadFiles(record)) {
      const compressed = isStoredAsImage(record, name);
      const file = this.file(record.snapshot.id, compressed ? `${name}${COMPRESSED_SUFFIX}` : name);
      total += await allocatedBytes(file);
      if (compressed) total += await allocatedBytes(checksumsFile(file));
    }
    return total;
  }
}

/** The raw payload files a record holds, in archive order. */
export function payloadFiles(record: SnapshotRecord): string[] {
  if (record.memory_layout === "none") return [DISK_FILE];
  return record.memory_layout === "file" ? [DISK_FILE, DEVICE_STATE_FILE, MEMORY_FILE] : [DISK_FILE, DEVICE_STATE_FILE];
}

/** Whether payload file `name` is stored as a squashfs image (the compressed memory payload). */
export function isStoredAsImage(record: SnapshotRecord, name: string): boolean {
  return name === record.memory_payload && record.snapshot.compression_state === "compressed";
}

/** Whether the compression worker has yet to compress the record's memory payload (queued, or cut off midway). */
export function needsCompression(record: SnapshotRecord): boolean {
  const state = record.snapshot.compression_state;
  return (
    record.snapshot.compression.enabled &&
    record.memory_payload !== null &&
    (state === "none" || state === "compressing")
  );
}

export async function allocatedBytes(file: string): Promise<number> {
  try {
    return (await stat(file)).blocks * 512;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return 0;
    throw error;
  }
}

type SnapshotEventType =
  | "snapshot.created"
  | "snapshot.compression.queued"
  | "snapshot.compression.started"
  | "snapshot.compression.completed"
  | "snapshot.compression.failed"
  | "snapshot.upload.started"
  | "snapshot.stored"
  | "snapshot.upload.failed"
  | "snapshot.adopted";

/** Appends the record's last event (again): consumers dedupe by its id. Returns the event id ("" for none). */
export async function publishSnapshotRecord(events: EventStream, record: SnapshotRecord): Promise<string> {
  const last = record.last_event;
  if (!last) return "";
  await events.append(
    last.type as SnapshotEventType,
    subjectOf.snapshot(record.snapshot.id),
    { snapshot: record.snapshot },
    { id: last.id, version: record.version, occurred_at: last.occurred_at },
  );
  return last.id;
}
