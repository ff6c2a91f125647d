// Replicas: a fork on this host of a snapshot stored on another pulls the payload, from the object store when it
// holds the snapshot (parallel ranged GETs, each object checked against the manifest's sha256) and otherwise from
// the owner's payload server (HTTP Range requests on the seekable .sfc files); resumes a pull that was cut off where
// it stopped, verifies every chunk against its seek table while installing, and keeps the copy so later forks here
// start locally.
// Concurrent pulls of one snapshot on this host run once. The copy's record keeps the owner's host_id, with
// compression off: the owner's record is the snapshot; this host never compresses or announces the copy.
// Which hosts hold a copy is this host's disk: the Redis set the API reads on delete is told it again by `reconcile`,
// which also drops a copy whose owner answers that it deleted the original (a delete this set missed).
// PAYLOAD_CACHE_BYTES bounds every payload on this disk: copies go whole, and an original the object store holds
// loses its payload files but keeps its record, marked `evicted_at`; `ensureLocal` pulls them back before any use.
import { createWriteStream, existsSync } from "node:fs";
import { mkdir, readFile, rm, stat, truncate } from "node:fs/promises";
import path from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { Redis } from "ioredis";
import { allocatedBytesUnder, CACHE_GRACE_MS, touchCacheEntry } from "../../shared/cache-budget.ts";
import { ApiError } from "../../shared/errors.ts";
import type { EventStream } from "../../shared/events/stream.ts";
import { commitStagedFiles, writeFileDurable } from "../../shared/files.ts";
import { nextStamp, TOMBSTONE } from "../../shared/host-records.ts";
import { type HostStatus, listHosts } from "../../shared/hosts.ts";
import { KeyedMutex } from "../../shared/keyed-mutex.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore, StoreManifest } from "../../shared/object-store.ts";
import type { PayloadClient, PayloadTarget } from "../../shared/payload-client.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";
import { ARCHIVE_RECORD, EXPORT_LISTING, type ExportListing } from "../../shared/snapshots/archive.ts";
import { payloadEntries } from "../../shared/snapshots/export-files.ts";
import { replicaSetKey } from "../../shared/snapshots/replicas.ts";
import {
  COMPRESSED_SUFFIX,
  needsCompression,
  payloadFiles,
  publishSnapshotRecord,
  type SnapshotRecord,
  type SnapshotStore,
} from "../../shared/snapshots/store.ts";
import { checksumsFile } from "../../shared/squashfs/checksums.ts";
import { type StagingKind, stagingPath } from "../../shared/temp-names.ts";
import { decodeStagedPayload, installPayload } from "./import.ts";

export interface ReplicaDeps {
  hostId: string;
  store: SnapshotStore;
  redis: Redis;
  prefix: string;
  payloads: PayloadClient;
  /** Where pulls come from first, when it holds the snapshot (a retired or offline owner's snapshots too). */
  objects?: ObjectStore;
  /** Where an adopted snapshot's record change is announced. */
  events: EventStream;
  /**
   * PAYLOAD_CACHE_BYTES, and whether a VM maps a snapshot's payload now: payloads beyond it are evicted (copies, and
   * originals the object store holds).
   */
  cache?: {
    budgetBytes: number;
    /** PAYLOAD_CACHE_GRACE_MS (default CACHE_GRACE_MS): a payload used this recently stays. */
    graceMs?: number;
    inUse: (snapshotId: string) => Promise<boolean>;
  };
  log: Logger;
}

export interface PullResult {
  pulled_bytes: number;
  ms: number;
}

export interface ReplicaReconcileResult {
  /** Copies written (again) to their snapshot's replica set. */
  registered: string[];
  /** Copies removed: their owner holds the original's tombstone. */
  dropped: string[];
}

const LISTING_FILE = "listing.json";

export class Replicas {
  private readonly pulls = new KeyedMutex();
  /** Snapshots a job on this host is using now (usingLocal), with how many jobs: never evicted meanwhile. */
  private readonly using = new Map<string, number>();
  private reconciling: Promise<ReplicaReconcileResult> | undefined;

  constructor(private readonly deps: ReplicaDeps) {}

  /** Makes sure this host holds snapshot `snapshotId` of host `ownerHostId`, pulling it if it does not. */
  ensure(snapshotId: string, ownerHostId: string): Promise<PullResult> {
    return this.pulls.run(snapshotId, async () => {
      if (await this.deps.store.read(snapshotId)) {
        // Used now: a fork follows, and eviction spares a copy used within its grace period.
        await touchCacheEntry(this.deps.store.dir(snapshotId));
        return { pulled_bytes: 0, ms: 0 };
      }
      const started = performance.now();
      const pulled = await this.pull(snapshotId, ownerHostId);
      await this.deps.redis.sadd(replicaSetKey(this.deps.prefix, snapshotId), this.deps.hostId);
      const ms = Math.round(performance.now() - started);
      this.deps.log.info({ snapshotId, ownerHostId, pulledBytes: pulled, ms }, "snapshot replica pulled");
      // Room for what came in, once this pull's lock is released (the copy just pulled is within its grace period).
      setImmediate(() => void this.enforceBudget().catch(() => {}));
      return { pulled_bytes: pulled, ms };
    });
  }

  /**
   * Makes sure the payload of `snapshotId`, a snapshot this host owns, is on this disk before a local use (a fork, a
   * restore, a recompression, an export from this host): one evicted to the object store is pulled back into its own
   * directory, checked against the record (the seek tables, the image's sums and the manifest's sha256). Concurrent
   * calls share one pull. Anything else (no record, a copy, a payload that is here) is left as it is.
   */
  ensureLocal(snapshotId: string): Promise<PullResult> {
    return this.pulls.run(snapshotId, async () => {
      const record = await this.deps.store.read(snapshotId);
      if (!record?.evicted_at) {
        if (record) await touchCacheEntry(this.deps.store.dir(snapshotId)); // used now (see ensure)
        return { pulled_bytes: 0, ms: 0 };
      }
      const started = performance.now();
      const pulled = await this.pullBack(record);
      const ms = Math.round(performance.now() - started);
      this.deps.log.info({ snapshotId, pulledBytes: pulled, ms }, "evicted snapshot payload pulled back");
      setImmediate(() => void this.enforceBudget().catch(() => {}));
      return { pulled_bytes: pulled, ms };
    });
  }

  /**
   * Runs `use` with the snapshot's payload on this disk (ensureLocal first) and safe from eviction until it ends: a
   * fork, a restore or a recompression of a snapshot whose payload may have been evicted runs through here.
   */
  async usingLocal<T>(snapshotId: string, use: () => Promise<T>): Promise<T> {
    this.using.set(snapshotId, (this.using.get(snapshotId) ?? 0) + 1);
    try {
      await this.ensureLocal(snapshotId);
      return await use();
    } finally {
      const left = this.using.get(snapshotId)! - 1;
      if (left > 0) this.using.set(snapshotId, left);
      else this.using.delete(snapshotId);
    }
  }

  /**
   * Makes a retired host's snapshot this host's own: pulled from the object store like a replica (unless a copy is
   * here), then recorded as an original, with the policy the store's record names, at a version above `minVersion`
   * (the read model's) so that every reader takes the new owner. A re-run finds it adopted and announces it again.
   */
  async adopt(
    snapshotId: string,
    fromHostId: string,
    minVersion: number,
  ): Promise<{ snapshot: Snapshot; event_id: string }> {
    const { objects, store, hostId } = this.deps;
    if (!objects) {
      throw new ApiError("invalid_state", "no object store is configured: another host's snapshot cannot be adopted");
    }
    // A snapshot the store never received completely is lost with its host: no retry can adopt it.
    if (!(await store.read(snapshotId)) && !(await objects.readManifest(snapshotId))) {
      throw new ApiError("not_found", `the object store holds no complete copy of snapshot ${snapshotId}`);
    }
    await this.ensure(snapshotId, fromHostId);
    return this.pulls.run(snapshotId, () =>
      store.withLock(snapshotId, async () => {
        const record = await store.read(snapshotId);
        if (!record) throw new ApiError("unavailable", `snapshot ${snapshotId} went while it was adopted`);
        if (!record.replica_of) {
          if (record.snapshot.host_id !== hostId) throw new ApiError("invalid_state", `${snapshotId} is not a copy`);
          return { snapshot: record.snapshot, event_id: await publishSnapshotRecord(this.deps.events, record) };
        }
        const manifest = await objects.readManifest(snapshotId);
        if (!manifest) throw new ApiError("unavailable", `the object store no longer holds snapshot ${snapshotId}`);
        const original = ARCHIVE_RECORD.safeParse(manifest.record);
        if (!original.success) {
          throw new ApiError("unavailable", `the object store's record of snapshot ${snapshotId} is not one of ours`);
        }
        const { replica_of: _copy, ...rest } = record;
        const stamp = nextStamp(
          { version: Math.max(record.version, minVersion), last_event: null },
          "snapshot.adopted",
          null,
        );
        const adopted: SnapshotRecord = {
          ...rest,
          snapshot: {
            ...record.snapshot,
            host_id: hostId,
            compression: original.data.snapshot.compression,
            // Stored as it is here only when the store holds the same form; else this host uploads it again.
            storage: manifest.compression_state === record.snapshot.compression_state ? "stored" : "uploading",
            storage_error: null,
          },
          ...stamp,
        };
        await store.write(adopted);
        await this.deps.redis.srem(replicaSetKey(this.deps.prefix, snapshotId), hostId);
        this.deps.log.info({ snapshotId, fromHostId }, "adopted a retired host's snapshot from the object store");
        return { snapshot: adopted.snapshot, event_id: await publishSnapshotRecord(this.deps.events, adopted) };
      }),
    );
  }

  /**
   * PAYLOAD_CACHE_BYTES: the payloads on this disk (originals and copies) beyond the budget go, least recently used
   * first (a fork or restore touches its snapshot's directory), never one a VM maps (`inUse`: its raw RAM mapped or
   * open, its mounted image mapped), nor one a job here uses (usingLocal), nor one used within the grace period. A
   * copy goes whole and can be pulled again; an original goes only while the object store holds exactly its payload
   * (see evictOriginal), and keeps its record.
   */
  async enforceBudget(now = Date.now()): Promise<{ totalBytes: number; evicted: string[]; overBudgetBytes: number }> {
    const { store, cache } = this.deps;
    if (!cache) return { totalBytes: 0, evicted: [], overBudgetBytes: 0 };
    const { budgetBytes, inUse, graceMs = CACHE_GRACE_MS } = cache;
    let totalBytes = 0;
    const candidates = [];
    for (const record of await store.readAll()) {
      const id = record.snapshot.id;
      const bytes = await allocatedBytesUnder(store.dir(id));
      totalBytes += bytes;
      if (!record.replica_of && !this.mayEvictOriginal(record)) continue;
      const lastUsedMs = (await stat(store.dir(id)).catch(() => undefined))?.mtimeMs ?? 0;
      candidates.push({ id, lastUsedMs, bytes, copy: Boolean(record.replica_of) });
    }
    const evicted: string[] = [];
    for (const candidate of candidates.sort((left, right) => left.lastUsedMs - right.lastUsedMs)) {
      if (totalBytes <= budgetBytes) break;
      if (now - candidate.lastUsedMs < graceMs) continue;
      // Under the snapshot's lock: a fork maps the payload while it holds it, so none can start in between.
      // The pull lock, then the snapshot's, as adopt() takes them.
      const gone = await this.pulls.run(candidate.id, () =>
        store.withLock(candidate.id, async () => {
          if (this.using.has(candidate.id) || (await inUse(candidate.id))) return false;
          return candidate.copy ? (await this.dropHere(candidate.id)).dropped : this.evictOriginal(candidate.id);
        }),
      );
      if (!gone) continue;
      totalBytes -= candidate.bytes;
      evicted.push(candidate.id);
    }
    if (evicted.length) this.deps.log.info({ evicted, totalBytes, budgetBytes }, "snapshot payloads evicted");
    return { totalBytes, evicted, overBudgetBytes: Math.max(0, totalBytes - budgetBytes) };
  }

  /**
   * An original may lose its payload files when the store holds them (`stored`) and no compression is waiting or
   * running (the compression worker works on this disk's files; a recompression asks for them back first).
   */
  private mayEvictOriginal(record: SnapshotRecord): boolean {
    const { snapshot } = record;
    return (
      this.deps.objects !== undefined &&
      snapshot.host_id === this.deps.hostId &&
      !record.evicted_at &&
      snapshot.storage === "stored" &&
      snapshot.compression_state !== "compressing" &&
      !needsCompression(record)
    );
  }

  /**
   * Under the snapshot's locks: checks again that it may go and that the store's signed manifest names exactly this
   * record's payload, in its compression state, and that the store still holds every object at the manifest's size;
   * then marks the record (`evicted_at`, written durably first) and removes the payload files and their cache entry.
   */
  private async evictOriginal(snapshotId: string): Promise<boolean> {
    const { store } = this.deps;
    const record = await store.read(snapshotId);
    if (!record || record.replica_of || !this.mayEvictOriginal(record)) return false;
    const held = await this.storeHoldsPayloadOf(record).catch((error: Error) => {
      // A manifest that does not verify, a store that does not answer: kept, and the next snapshot is tried.
      this.deps.log.warn({ snapshotId, err: error.message }, "original payload kept: its copy in the store is unsure");
      return false;
    });
    if (!held) return false;
    await store.write({ ...record, evicted_at: new Date().toISOString() });
    for (const name of payloadFiles(record)) {
      const image = store.file(snapshotId, `${name}${COMPRESSED_SUFFIX}`);
      for (const file of [store.file(snapshotId, name), image, checksumsFile(image)]) await rm(file, { force: true });
    }
    await rm(store.cacheDir(snapshotId), { recursive: true, force: true });
    this.deps.log.info({ snapshotId }, "original snapshot payload evicted: the object store holds it");
    return true;
  }

  /** Whether the store's manifest names exactly this record's payload and the store holds every object it names. */
  private async storeHoldsPayloadOf(record: SnapshotRecord): Promise<boolean> {
    const { store, objects } = this.deps;
    const snapshotId = record.snapshot.id;
    const manifest = await this.storedCopyOf(record);
    if (!manifest) return false;
    for (const entry of manifest.entries) {
      if ((await objects!.sizeOf(snapshotId, entry.name)) !== entry.size) return false;
      // A stored image is the very file the store holds: the same size here, or this is not that payload.
      const image = entry.name.endsWith(COMPRESSED_SUFFIX) ? store.file(snapshotId, entry.name) : undefined;
      if (image && (await stat(image).catch(() => undefined))?.size !== entry.size) return false;
    }
    return true;
  }

  /**
   * The store's manifest of `record`'s snapshot when it holds exactly the payload this record names: signed by this
   * fleet, of the same snapshot, in the same compression state, with the record's payload entries and no others.
   */
  private async storedCopyOf(record: SnapshotRecord): Promise<StoreManifest | undefined> {
    const snapshotId = record.snapshot.id;
    const manifest = await this.deps.objects?.readManifest(snapshotId);
    if (!manifest || manifest.compression_state !== record.snapshot.compression_state) return undefined;
    const stored = ARCHIVE_RECORD.safeParse(manifest.record);
    if (!stored.success || stored.data.snapshot.id !== snapshotId) return undefined;
    const names = manifest.entries.map((entry) => entry.name).sort();
    return JSON.stringify(names) === JSON.stringify(payloadEntries(record).sort()) ? manifest : undefined;
  }

  /** ensureLocal's pull: the store's objects into a staging directory, decoded, then moved in beside the record. */
  private async pullBack(record: SnapshotRecord): Promise<number> {
    const { store, objects, hostId } = this.deps;
    const snapshotId = record.snapshot.id;
    const manifest = objects && (await this.storedCopyOf(record));
    if (!manifest) {
      throw new ApiError(
        "unavailable",
        `snapshot ${snapshotId}'s payload was evicted to the object store, which no longer holds it as recorded`,
      );
    }
    const staging = this.stagingDir(snapshotId, "pull-back");
    await mkdir(staging, { recursive: true });
    const source = storeSource(objects!, snapshotId, manifest);
    const listing = await this.keepListing(await source.listing(), staging);
    let pulled = 0;
    for (const file of listing.files) pulled += await source.fetch(file, path.join(staging, file.name));
    await rm(path.join(staging, LISTING_FILE));
    try {
      await decodeStagedPayload(staging, record, hostId);
    } catch (error) {
      await rm(staging, { recursive: true, force: true }); // the next attempt starts over
      throw new ApiError("unavailable", `snapshot ${snapshotId}'s payload from the store failed verification`, {
        cause: error,
      });
    }
    await store.withLock(snapshotId, async () => {
      const current = await store.read(snapshotId);
      if (!current?.evicted_at) return; // deleted meanwhile
      await commitStagedFiles(staging, store.dir(snapshotId));
      const { evicted_at: _back, ...restored } = current;
      await store.write(restored);
    });
    await rm(staging, { recursive: true, force: true });
    return pulled;
  }

  /** Removes this host's copy (never an original) and its cache. */
  drop(snapshotId: string): Promise<{ dropped: boolean }> {
    return this.pulls.run(snapshotId, () => this.dropHere(snapshotId));
  }

  /** drop() for a caller that holds the snapshot's pull lock. */
  private async dropHere(snapshotId: string): Promise<{ dropped: boolean }> {
    const { store } = this.deps;
    const record = await store.read(snapshotId);
    const dropped = record !== undefined && record.snapshot.host_id !== this.deps.hostId;
    if (dropped) {
      await rm(store.dir(snapshotId), { recursive: true, force: true });
      await rm(store.cacheDir(snapshotId), { recursive: true, force: true });
    }
    await rm(this.stagingDir(snapshotId), { recursive: true, force: true });
    await this.deps.redis.srem(replicaSetKey(this.deps.prefix, snapshotId), this.deps.hostId);
    return { dropped };
  }

  /**
   * Tells Redis again of every copy on this disk (Redis may have lost the sets) and drops each copy whose owner says
   * it deleted the original. A call while one runs shares it.
   */
  reconcile(): Promise<ReplicaReconcileResult> {
    this.reconciling ??= this.reconcileOnce().finally(() => {
      this.reconciling = undefined;
    });
    return this.reconciling;
  }

  private async reconcileOnce(): Promise<ReplicaReconcileResult> {
    const result: ReplicaReconcileResult = { registered: [], dropped: [] };
    const copies = await this.deps.store.listReplicas();
    if (copies.length === 0) return result; // most hosts hold none: no need to list the hosts
    const hosts = await listHosts(this.deps.redis, this.deps.prefix);
    for (const { snapshot, replica_of: ownerHostId } of copies) {
      if (await this.originalDeleted(snapshot.id, ownerHostId!, hosts)) {
        if ((await this.drop(snapshot.id)).dropped) result.dropped.push(snapshot.id);
      } else if (await this.register(snapshot.id)) {
        result.registered.push(snapshot.id);
      }
    }
    if (result.dropped.length) {
      this.deps.log.info({ snapshots: result.dropped }, "dropped replicas whose original its owner deleted");
    }
    return result;
  }

  /** Adds this host to the snapshot's replica set if the copy is still here (a drop may have just removed it). */
  private register(snapshotId: string): Promise<boolean> {
    return this.pulls.run(snapshotId, async () => {
      if (!(await this.deps.store.read(snapshotId))) return false;
      await this.deps.redis.sadd(replicaSetKey(this.deps.prefix, snapshotId), this.deps.hostId);
      return true;
    });
  }

  /**
   * True only when the owner answers with its tombstone of the snapshot. An offline owner, an error or a 404 (it
   * never had it, lost its disk, or its tombstone expired) keep the copy: it may be the last one.
   */
  private async originalDeleted(snapshotId: string, ownerHostId: string, hosts: HostStatus[]): Promise<boolean> {
    const owner = hosts.find((host) => host.id === ownerHostId);
    if (!owner?.online || !owner.payload_url) return false;
    const target = { hostId: ownerHostId, url: owner.payload_url };
    try {
      const response = await this.deps.payloads.request(target, `/snapshots/${snapshotId}/tombstone`);
      if (response.status !== 200) {
        await response.body?.cancel();
        return false;
      }
      const tombstone = TOMBSTONE.safeParse(await response.json());
      return tombstone.success && tombstone.data.kind === "snapshot" && tombstone.data.snapshot.id === snapshotId;
    } catch (error) {
      this.deps.log.warn(
        { snapshotId, ownerHostId, err: (error as Error).message },
        "cannot ask the owner whether a replica's original is deleted: the copy stays",
      );
      return false;
    }
  }

  private stagingDir(snapshotId: string, kind: StagingKind = "pull"): string {
    return stagingPath(this.deps.store.root, kind, snapshotId);
  }

  private async pull(snapshotId: string, ownerHostId: string): Promise<number> {
    const source = await this.source(snapshotId, ownerHostId);
    const staging = this.stagingDir(snapshotId);
    await mkdir(staging, { recursive: true });
    const listing = await this.keepListing(await source.listing(), staging);
    // Another host's record passes the import's limits too.
    const parsed = ARCHIVE_RECORD.safeParse(listing.record);
    if (!parsed.success)
      throw new ApiError("unavailable", `${source.name} holds a record of ${snapshotId} that is not ours`);
    const record = parsed.data;
    if (record.snapshot.id !== snapshotId) {
      throw new ApiError("unavailable", `${source.name} holds another snapshot's record under ${snapshotId}`);
    }
    let pulled = 0;
    for (const file of listing.files) pulled += await source.fetch(file, path.join(staging, file.name));
    await rm(path.join(staging, LISTING_FILE));
    try {
      await installPayload(
        this.deps.store,
        this.deps.hostId,
        staging,
        record,
        { id: snapshotId, compression: { enabled: false } },
        { replica_of: ownerHostId },
      );
    } catch (error) {
      // A payload that does not decode is not resumed: the next attempt starts over.
      await rm(staging, { recursive: true, force: true });
      throw new ApiError("unavailable", `replica of snapshot ${snapshotId} failed verification`, { cause: error });
    }
    return pulled;
  }

  /** The object store when it holds a complete copy, else the owner's payload server (which must be online). */
  private async source(snapshotId: string, ownerHostId: string): Promise<PullSource> {
    const { objects } = this.deps;
    const manifest = await objects?.readManifest(snapshotId);
    if (objects && manifest) return storeSource(objects, snapshotId, manifest);
    const owner = (await listHosts(this.deps.redis, this.deps.prefix)).find((host) => host.id === ownerHostId);
    if (!owner?.online || !owner.payload_url) {
      const where = objects ? " and the object store does not hold it (yet)" : "";
      throw new ApiError("unavailable", `host ${ownerHostId}, which stores the snapshot, is offline${where}`);
    }
    const server: Owner = { client: this.deps.payloads, target: { hostId: ownerHostId, url: owner.payload_url } };
    return {
      name: `host ${ownerHostId}`,
      listing: async () =>
        EXPORT_LISTING.parse(await (await request(server, `/snapshots/${snapshotId}/export`)).json()),
      fetch: (file, target) =>
        downloadResuming(server, `/snapshots/${snapshotId}/files/${file.name}`, target, file.size),
    };
  }

  /** The source's listing, kept with a resumable pull: a pull that resumes must fetch the same files. */
  private async keepListing(fresh: ExportListing, staging: string): Promise<ExportListing> {
    const kept = path.join(staging, LISTING_FILE);
    if (existsSync(kept)) {
      // Unreadable (a release that wrote it differently): the files beside it are ours and re-fetchable, so start over.
      const previous = EXPORT_LISTING.safeParse(await readFile(kept, "utf8").then(JSON.parse, () => undefined));
      if (!previous.success || JSON.stringify(previous.data.files) !== JSON.stringify(fresh.files)) {
        await rm(staging, { recursive: true, force: true });
        await mkdir(staging, { recursive: true });
      }
    }
    await writeFileDurable(kept, JSON.stringify(fresh));
    return fresh;
  }
}

/** Where a pull gets the snapshot's listing and files from. */
interface PullSource {
  name: string;
  listing(): Promise<ExportListing>;
  /** Fetches one listed file into `target` (resuming what an earlier attempt got); returns the bytes fetched. */
  fetch(file: ExportListing["files"][number], target: string): Promise<number>;
}

/** A snapshot's objects in the store, listed by its manifest; each checked against the manifest's sha256. */
function storeSource(objects: ObjectStore, snapshotId: string, manifest: StoreManifest): PullSource {
  const entries = manifest.entries;
  return {
    name: "the object store",
    listing: async () => ({ record: manifest.record, files: entries }),
    fetch: (file, target) => objects.download(snapshotId, entries.find((entry) => entry.name === file.name)!, target),
  };
}

/** The owning host's payload server, and the client that signs requests to it. */
export interface Owner {
  client: PayloadClient;
  target: PayloadTarget;
}

/** A failure to reach the owner (refused, reset, timed out) is a retryable `unavailable`, never an internal error. */
function unreachable(owner: Owner, pathAndQuery: string, error: unknown): unknown {
  if (error instanceof ApiError) return error;
  const reason = (error as Error & { cause?: Error }).cause?.message ?? (error as Error).message;
  return new ApiError("unavailable", `host ${owner.target.hostId} did not answer ${pathAndQuery}: ${reason}`, {
    cause: error,
  });
}

async function request(owner: Owner, pathAndQuery: string, range?: string): Promise<Response> {
  const response = await owner.client
    .request(owner.target, pathAndQuery, { headers: range ? { range } : {} })
    .catch((error: unknown) => {
      throw unreachable(owner, pathAndQuery, error);
    });
  if (!response.ok) {
    throw new ApiError(
      "unavailable",
      `the owning host answered ${response.status} to ${pathAndQuery}: ${await response.text()}`,
    );
  }
  return response;
}

/** Fetches `size` bytes into `file`, asking only for what a previous attempt did not get. Returns bytes fetched. */
export async function downloadResuming(
  owner: Owner,
  pathAndQuery: string,
  file: string,
  size: number,
): Promise<number> {
  let have = existsSync(file) ? (await stat(file)).size : 0;
  if (have > size) {
    await truncate(file, 0);
    have = 0;
  }
  if (have === size) return 0;
  const response = await request(owner, pathAndQuery, have > 0 ? `bytes=${have}-` : undefined);
  if (have > 0 && response.status !== 206) {
    await truncate(file, 0); // the server ignored the range: take the whole file
    have = 0;
  }
  await pipeline(
    Readable.fromWeb(response.body! as never),
    createWriteStream(file, { flags: have > 0 ? "a" : "w" }),
  ).catch((error: unknown) => {
    // The owner went away mid-body: what arrived stays, and the next attempt asks for the rest.
    if ((error as NodeJS.ErrnoException).syscall === "write") throw error; // our disk, not the owner
    throw unreachable(owner, pathAndQuery, error);
  });
  const got = (await stat(file)).size;
  if (got !== size) throw new ApiError("unavailable", `${pathAndQuery}: got ${got} of ${size} bytes`);
  return size - have;
}
