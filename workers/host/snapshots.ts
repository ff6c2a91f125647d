// The host agent's snapshots: capture from an instance, fork a new instance, restore onto the source, delete.
// Forks and restores map the stored RAM privately (copy-on-write), so they copy no guest memory; a compressed
// payload is a squashfs image, verified and mounted read-only once, whose blocks the kernel decompresses as guests
// touch them (image-mounts.ts).
import { existsSync } from "node:fs";
import { mkdir, open, readdir, rm } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { enforceCacheBudget, filesInUseUnder, touchCacheEntry } from "../../shared/cache-budget.ts";
import { crashPoint } from "../../shared/crash-points.ts";
import { ApiError, notFound } from "../../shared/errors.ts";
import type { EventStream } from "../../shared/events/stream.ts";
import { commitStagedDirectory, fsyncPath } from "../../shared/files.ts";
import { madeBy, nextStamp, publishTombstone, type TombstoneStore } from "../../shared/host-records.ts";
import { readMachineInfo } from "../../shared/hypervisor/machine.ts";
import { copyFileSparse, copySparseIntoStaging, sharesExtents } from "../../shared/hypervisor/sparse-copy.ts";
import { assertOperationAllowed } from "../../shared/instances/transitions.ts";
import { queueName } from "../../shared/jobs/catalog.ts";
import { compressionJobId, uploadJobId } from "../../shared/jobs/compression-jobs.ts";
import type { JobProducer } from "../../shared/jobs/producer.ts";
import type { Lease } from "../../shared/locks.ts";
import type { Logger } from "../../shared/logger.ts";
import type { ObjectStore } from "../../shared/object-store.ts";
import { describeUnreadable, quarantineDirectory } from "../../shared/quarantine.ts";
import { parseSize } from "../../shared/schemas/common.ts";
import type { Instance } from "../../shared/schemas/instance.ts";
import type { Snapshot, TargetState } from "../../shared/schemas/snapshot.ts";
import { expectedImage } from "../../shared/snapshots/export-files.ts";
import {
  DEVICE_STATE_FILE,
  DISK_FILE,
  MEMORY_FILE,
  publishSnapshotRecord,
  type SnapshotRecord,
  type SnapshotStore,
} from "../../shared/snapshots/store.ts";
import { allocatedBytesOf, asInsufficientStorage, assertFreeSpace } from "../../shared/storage/free-space.ts";
import { stagingPath } from "../../shared/temp-names.ts";
import { assertFreeMemory } from "./free-memory.ts";
import type { ImageMounts } from "./image-mounts.ts";
import type { CommandResult, InstanceManager, InstanceRecord } from "./instances.ts";

export interface SnapshotManagerOptions {
  hostId: string;
  instances: InstanceManager;
  store: SnapshotStore;
  /** Where compressed payloads are mounted for forks and restores to map. */
  mounts: ImageMounts;
  tombstones: TombstoneStore;
  events: EventStream;
  /** Puts compression and upload jobs on this host's compression queue. */
  jobs: JobProducer;
  /** The object store snapshots are uploaded to (by the compression worker), if there is one. */
  objects?: ObjectStore;
  /** RAW_CACHE_BUDGET_BYTES: cached .sfc copies beyond this are evicted, least recently used first. */
  rawCacheBudgetBytes: number;
  log: Logger;
}

/** How often a delete looks whether the forks booting from the snapshot are done (no event to wait on here). */
const BOOT_WAIT_POLL_MS = 50;

export class SnapshotManager {
  /** Forks booting from a snapshot's mounted image outside its lock, per snapshot: a delete waits for them. */
  private readonly booting = new Map<string, number>();

  constructor(private readonly options: SnapshotManagerOptions) {}

  private async waitForBoots(snapshotId: string, lease: Lease): Promise<void> {
    while ((this.booting.get(snapshotId) ?? 0) > 0) {
      await lease.assertHeld();
      await sleep(BOOT_WAIT_POLL_MS);
    }
  }

  /**
   * Captures a snapshot of the instance. From Running, the guest is paused only for the device state and copies.
   * Safe to run twice: the id is new per request, so a record with it is this capture's, done already.
   */
  capture(instanceId: string, prepared: Snapshot, jobId?: string): Promise<{ snapshot: Snapshot; event_id: string }> {
    const { instances, store } = this.options;
    return instances.locks.run(instanceId, async () => {
      const done = await store.read(prepared.id);
      if (done) return this.publish(done);
      if (await this.options.tombstones.read("snapshot", prepared.id)) throw notFound("snapshot", prepared.id);
      // A payload directory without a record is an earlier run that died before its record: capture again.
      await rm(store.dir(prepared.id), { recursive: true, force: true });
      const instance = await instances.read(instanceId);
      assertOperationAllowed(prepared.kind === "Standby" ? "snapshotStandby" : "snapshotStopped", instance);
      const files = instances.files(instanceId);
      const staging = stagingPath(store.root, "staging", prepared.id);
      try {
        await rm(staging, { recursive: true, force: true });
        await mkdir(staging, { recursive: true });
        await this.assertRoomFor(
          prepared.kind === "Standby" ? [files.disk, files.memory, files.standbyState] : [files.disk],
        );
        let layout: SnapshotRecord["memory_layout"] = "none";
        let downtimeMs: number | null = null;
        if (prepared.kind === "Standby") {
          const shared = (await instances.memoryMode(instanceId)) === "shared";
          layout = shared ? "file" : "stream";
          if (instance.state === "Running") {
            downtimeMs = await this.captureRunning(instance, staging, shared);
          } else {
            // Standby: the VMM is gone and its RAM and device state are on disk already.
            await copySparseIntoStaging(files.standbyState, path.join(staging, DEVICE_STATE_FILE));
            if (shared) await copySparseIntoStaging(files.memory, path.join(staging, MEMORY_FILE));
            await copySparseIntoStaging(files.disk, path.join(staging, DISK_FILE));
          }
        } else {
          await copySparseIntoStaging(files.disk, path.join(staging, DISK_FILE));
        }
        await commitStagedDirectory(staging, store.dir(prepared.id));
        crashPoint("snapshot-capture.after-payload");

        // The driver writes which QEMU made a device state beside it: forks and restores are checked against it.
        const deviceState =
          instance.state === "Running" ? store.file(prepared.id, DEVICE_STATE_FILE) : files.standbyState;
        const machine = prepared.kind === "Standby" ? await readMachineInfo(deviceState) : null;
        const record: SnapshotRecord = {
          snapshot: {
            ...prepared,
            host_id: this.options.hostId,
            capture_downtime_ms: downtimeMs,
            compression_state: "none",
            qemu_version: machine?.qemu_version ?? null,
            machine_type: machine?.machine_type ?? null,
          },
          source: instance,
          memory_layout: layout,
          memory_payload: layout === "file" ? MEMORY_FILE : layout === "stream" ? DEVICE_STATE_FILE : null,
          ...nextStamp(undefined, "snapshot.created", jobId),
        };
        record.snapshot.size_bytes = await store.storedBytes(record);
        await store.write(record);
        crashPoint("snapshot-capture.after-record");
        const { event_id } = await this.publish(record);
        await this.queueBackgroundWork(record);
        this.options.log.info(
          { snapshotId: prepared.id, kind: prepared.kind, layout, downtimeMs, sizeBytes: record.snapshot.size_bytes },
          "snapshot captured",
        );
        return { snapshot: record.snapshot, event_id };
      } catch (error) {
        await rm(staging, { recursive: true, force: true });
        // Once the record is written the snapshot exists: only an append failed, which a re-run or announcement heals.
        if (!(await store.read(prepared.id).catch(() => undefined))) {
          await rm(store.dir(prepared.id), { recursive: true, force: true });
        }
        throw asInsufficientStorage(error, this.options.hostId, `snapshot ${prepared.id}`);
      }
    });
  }

  /**
   * Pauses the guest only for its device state and (shared RAM) a sparse copy of its memory file, both at once;
   * the disk is copied by QEMU while the guest runs again. Returns the downtime in milliseconds.
   */
  private async captureRunning(instance: Instance, staging: string, sharedMemory: boolean): Promise<number> {
    const handle = await this.options.instances.requireHandle(instance);
    const memory = this.options.instances.files(instance.id).memory;
    // Where copies share extents, the copy in the pause is a reflink, which first writes the file's dirty pages
    // back: flushed now, while the guest runs, the pause writes only what the guest dirties from here on.
    const flushStarted = performance.now();
    const flushed = sharedMemory && (await sharesExtents(memory));
    if (flushed) await fsyncPath(memory);
    const writeBackMs = flushed ? Math.round(performance.now() - flushStarted) : undefined;
    const { downtimeMs, steps, diskCopy } = await handle.captureRunning({
      deviceStateFile: path.join(staging, DEVICE_STATE_FILE),
      diskFile: path.join(staging, DISK_FILE),
      // Not flushed in the pause: the staging directory's commit flushes it before the record is written.
      whilePaused: sharedMemory ? () => copySparseIntoStaging(memory, path.join(staging, MEMORY_FILE)) : undefined,
    });
    const copyStarted = performance.now();
    await diskCopy.wait();
    const diskCopyMs = Math.round(performance.now() - copyStarted);
    this.options.log.info(
      { instanceId: instance.id, downtimeMs, writeBackMs, ...steps, diskCopyMs },
      "running guest captured",
    );
    return downtimeMs;
  }

  /** 507 before anything is copied when the snapshots' file system cannot hold the files' allocated bytes. */
  private async assertRoomFor(payloadFiles: string[]): Promise<void> {
    await assertFreeSpace(this.options.store.root, await allocatedBytesOf(payloadFiles), this.options.hostId);
  }

  /**
   * At start, before any job runs: removes payloads whose tombstone is written (a delete that died midway) and
   * payload directories with no record (a capture that died before its record; its job, if it comes back, captures
   * again). A directory whose record is there but cannot be read or parsed is not ours to judge: it is quarantined.
   */
  async removeHalfDone(tombstoneRetentionMs: number): Promise<void> {
    const { store, tombstones, log } = this.options;
    for (const tombstone of await tombstones.list(tombstoneRetentionMs)) {
      if (tombstone.kind !== "snapshot" || !existsSync(store.dir(tombstone.snapshot.id))) continue;
      const unstored = await this.options.objects?.deleteSnapshot(tombstone.snapshot.id).then(
        () => true,
        (error: Error) => {
          log.warn({ snapshotId: tombstone.snapshot.id, err: error.message }, "deleted snapshot still in the store");
          return false; // the directory keeps the delete unfinished: the next start tries again
        },
      );
      if (unstored === false) continue;
      await rm(store.dir(tombstone.snapshot.id), { recursive: true, force: true });
      log.warn({ snapshotId: tombstone.snapshot.id }, "finished a snapshot delete that died midway");
    }
    for (const id of await readdir(store.root).catch(() => [] as string[])) {
      if (id.startsWith(".")) continue;
      const found = await store.read(id).then(
        (record) => ({ record }),
        (error: unknown) => ({ error }),
      );
      if ("error" in found) {
        await this.quarantine(id, found.error);
        continue;
      }
      if (found.record) continue;
      await rm(store.dir(id), { recursive: true, force: true });
      log.warn({ snapshotId: id }, "removed a snapshot payload left without a record");
    }
  }

  /** Moves a snapshot directory whose record cannot be understood aside, whole (shared/quarantine.ts). */
  private async quarantine(id: string, error: unknown): Promise<void> {
    const { store, log } = this.options;
    const reason = describeUnreadable(error);
    const entry = await quarantineDirectory(store.dataDir, "snapshot", id, store.dir(id), reason).catch(
      (moveError: Error) => {
        log.error(
          { snapshotId: id, reason, err: moveError.message },
          "unreadable snapshot left in place: cannot move it aside",
        );
        return undefined;
      },
    );
    if (entry)
      log.error({ snapshotId: id, reason, path: entry.path }, "snapshot with an unreadable record quarantined");
  }

  private async publish(record: SnapshotRecord): Promise<{ snapshot: Snapshot; event_id: string }> {
    return { snapshot: record.snapshot, event_id: await publishSnapshotRecord(this.options.events, record) };
  }

  async queueCompression(snapshotId: string): Promise<void> {
    await this.options.jobs.enqueue(
      "snapshot.compress",
      { snapshot_id: snapshotId },
      { hostId: this.options.hostId, jobId: compressionJobId(snapshotId) },
    );
  }

  /**
   * After a capture or an import: the upload to the object store (first: until it is stored, this disk holds the only
   * copy) and the compression the policy asks for. The snapshot is durable and announced, so a failed enqueue must
   * not undo it: the compression worker's reconcile queues both again.
   */
  async queueBackgroundWork(record: SnapshotRecord): Promise<void> {
    const { objects, jobs, hostId, log } = this.options;
    const snapshotId = record.snapshot.id;
    if (objects) {
      await jobs
        .enqueueOnce("snapshot.upload", { snapshot_id: snapshotId }, { hostId, jobId: uploadJobId(snapshotId) })
        .catch((error: Error) => log.warn({ snapshotId, err: error.message }, "upload not queued yet"));
    }
    const { compression, compression_state } = record.snapshot;
    if (compression.enabled && record.memory_payload && compression_state === "none") {
      await this.queueCompression(snapshotId).catch((error: Error) =>
        log.warn({ snapshotId, err: error.message }, "compression not queued yet"),
      );
    }
  }

  /**
   * Boots a new instance from the snapshot in the target state. With `minVersion`, the instance is a retired host's,
   * restored here under its own id: an `instance.restored` above the version the read model holds of it.
   */
  async fork(
    snapshotId: string,
    prepared: Instance,
    target: TargetState,
    jobId?: string,
    minVersion?: number,
  ): Promise<CommandResult> {
    const { instances } = this.options;
    const files = instances.files(prepared.id);
    return instances.locks.run(prepared.id, async () => {
      // The new instance's id is new per request: a record with it means this fork ran before and finished.
      const existing = await instances.findRecord(prepared.id);
      if (existing) return instances.publish(existing);
      const record = await this.requireRecord(snapshotId);
      await this.assertMemoryFor(prepared, target);
      await instances.clearUnfinished(prepared.id);
      await mkdir(files.dir, { recursive: true });
      try {
        const instance = await this.bringUp(prepared, record, target);
        crashPoint("snapshot-fork.after-boot");
        return await instances.commit(instance, minVersion === undefined ? "instance.forked" : "instance.restored", {
          jobId,
          snapshotId,
          previous: minVersion === undefined ? undefined : { version: minVersion, last_event: null },
          crashAt: "snapshot-fork.after-record",
        });
      } catch (error) {
        if (await instances.findRecord(prepared.id).catch(() => undefined)) throw error; // durable: only the append failed
        await instances.stopVm(prepared).catch(() => {});
        await rm(files.dir, { recursive: true, force: true });
        throw asInsufficientStorage(error, this.options.hostId, `instance ${prepared.id}`);
      }
    });
  }

  /** Puts the snapshot's own source instance back to the snapshot's moment, in the target state. */
  async restore(snapshotId: string, instanceId: string, target: TargetState, jobId?: string): Promise<CommandResult> {
    const { instances } = this.options;
    return instances.locks.run(instanceId, async () => {
      const current = await instances.readRecord(instanceId);
      if (madeBy(current, jobId)) return instances.publish(current);
      const record = await this.requireRecord(snapshotId);
      const instance = current.instance;
      if (record.snapshot.source_instance_id !== instanceId) {
        throw new ApiError("invalid_request", `snapshot ${snapshotId} was not taken of instance ${instance.name}`);
      }
      assertOperationAllowed("restoreSnapshot", instance);
      await this.assertMemoryFor(instance, target);
      await instances.stopVm(instance);
      await instances.discardMemoryState(instanceId);
      let restored: Instance;
      try {
        restored = await this.bringUp(instance, record, target);
      } catch (error) {
        await this.recordFailedRestore(current, snapshotId, error);
        throw error;
      }
      return instances.commit(restored, "instance.restored", { jobId, snapshotId, previous: current });
    });
  }

  /**
   * A restore that failed midway has stopped the VM and discarded its memory and device state: the record must not go
   * on saying Standby or has_snapshot. It says Stopped, with why; a retry of the restore starts from there.
   */
  private async recordFailedRestore(current: InstanceRecord, snapshotId: string, error: unknown): Promise<void> {
    const { instances, log } = this.options;
    const instance = current.instance;
    await instances.stopVm(instance).catch(() => {}); // a VM the failed boot may have left
    const reason = error instanceof Error ? error.message : String(error);
    log.error({ instanceId: instance.id, snapshotId, err: reason }, "restore failed: the instance is left Stopped");
    await instances.commit(
      {
        ...instance,
        state: "Stopped",
        has_snapshot: false,
        state_error: `restore from snapshot ${snapshotId} failed: ${reason}`,
        stopped_at: new Date().toISOString(),
      },
      "instance.updated",
      { previous: current },
    );
  }

  /**
   * Writes the snapshot's tombstone (the durable decision), removes its payload and cache (a compression in flight
   * sees its record gone at its next progress step and stops), and emits snapshot.deleted. A re-run, or a delete that
   * died midway, finds the tombstone and finishes.
   */
  async delete(snapshotId: string, jobId?: string): Promise<{ snapshot: Snapshot; event_id: string }> {
    const { store, tombstones } = this.options;
    const tombstone = await store.withLock(snapshotId, async (lease) => {
      let found = await tombstones.read("snapshot", snapshotId);
      if (!found) {
        const record = await this.requireRecord(snapshotId);
        const stamp = nextStamp(record, "snapshot.deleted", jobId);
        found = {
          kind: "snapshot",
          deleted_at: stamp.last_event.occurred_at,
          ...stamp,
          snapshot: record.snapshot,
        };
        await tombstones.write(found);
        crashPoint("snapshot-delete.after-tombstone");
      }
      // The store's copy first (manifest first: a half-deleted snapshot reads as absent): should the store fail, the
      // directory stays with the tombstone, and a re-run or the next start (removeHalfDone) finishes.
      await this.options.objects?.deleteSnapshot(snapshotId);
      // A fork booting outside the lock still reads the device state from the snapshot's directory.
      await this.waitForBoots(snapshotId, lease);
      await lease.assertHeld();
      await rm(store.dir(snapshotId), { recursive: true, force: true });
      // Forks still running keep the image mapped (and the loop device keeps the file): the last one's stop unmounts.
      await this.options.mounts.releaseLocked(snapshotId);
      await rm(store.cacheDir(snapshotId), { recursive: true, force: true });
      return found;
    });
    if (tombstone.kind !== "snapshot") throw new Error(`tombstone of snapshot ${snapshotId} is not a snapshot's`);
    const queue = this.options.jobs.queue(queueName("compression", this.options.hostId));
    await queue.remove(compressionJobId(snapshotId)).catch(() => 0); // only waiting jobs can be removed
    return { snapshot: tombstone.snapshot, event_id: await publishTombstone(this.options.events, tombstone) };
  }

  private async requireRecord(snapshotId: string): Promise<SnapshotRecord> {
    const record = await this.options.store.read(snapshotId);
    if (!record) throw notFound("snapshot", snapshotId);
    return record;
  }

  /** A target that boots the guest needs its RAM free on this host: refused before anything is touched. */
  private async assertMemoryFor(instance: Instance, target: TargetState): Promise<void> {
    if (target !== "Stopped") await assertFreeMemory(parseSize(instance.size)!, this.options.hostId);
  }

  /**
   * Gives `instance` the snapshot's disk and, for a Standby snapshot whose target is not Stopped, boots it from the
   * snapshot's memory and device state. Returns the instance record in its new state (not yet committed).
   */
  private async bringUp(instance: Instance, record: SnapshotRecord, target: TargetState): Promise<Instance> {
    const { instances, store } = this.options;
    const files = instances.files(instance.id);
    const snapshotId = record.snapshot.id;
    assertPayloadHere(record);
    await touchCacheEntry(store.dir(snapshotId)); // its last use: a payload's place in the cache (replicas.ts)
    await copyFileSparse(store.file(snapshotId, DISK_FILE), files.disk);
    const now = new Date().toISOString();
    const base: Instance = { ...instance, state_error: null, has_snapshot: false };
    if (target === "Stopped") return { ...base, state: "Stopped", stopped_at: now };
    if (record.snapshot.kind === "Stopped") {
      await instances.boot(instance);
      return { ...base, state: "Running", started_at: now };
    }
    // The snapshot's lock is held until QEMU has the payload open: a compression finishing meanwhile may remove the
    // raw file, and a VM stopping meanwhile may unmount the image; both are harmless once it is mapped. A payload
    // inside the mounted image is pinned instead (an open file keeps the mount from being unmounted), and the lock
    // released before the boot: forks of one compressed snapshot then boot side by side, not one at a time.
    const { mounts } = this.options;
    const layout = await store
      .withLock(snapshotId, async () => {
        const current = await store.read(snapshotId);
        if (!current) throw notFound("snapshot", snapshotId);
        assertPayloadHere(current);
        const payload = await this.rawPayload(current);
        const deviceState = current.memory_layout === "stream" ? payload : store.file(snapshotId, DEVICE_STATE_FILE);
        const memoryFile = current.memory_layout === "file" ? payload : await instances.blankMemoryFile(instance);
        const boot = () =>
          instances.boot(instance, {
            incoming: deviceState,
            memoryFile,
            privateMemory: true,
            readOnlyMemory: mounts.snapshotOf(memoryFile) !== null,
            paused: target === "Standby",
          });
        if (mounts.snapshotOf(payload) === null) {
          await boot();
          return { layout: current.memory_layout };
        }
        const pin = await open(payload, "r");
        this.booting.set(snapshotId, (this.booting.get(snapshotId) ?? 0) + 1);
        return { layout: current.memory_layout, boot, pin };
      })
      .then(async ({ layout, boot, pin }) => {
        if (!pin) return layout;
        try {
          await boot!();
        } finally {
          await pin.close();
          const left = this.booting.get(snapshotId)! - 1;
          if (left > 0) this.booting.set(snapshotId, left);
          else this.booting.delete(snapshotId);
        }
        return layout;
      })
      .catch(async (error: unknown) => {
        // A mount this boot made is kept with a timer like any other, not left behind.
        await mounts
          .idleAfterUse(snapshotId)
          .catch((idleError: Error) =>
            this.options.log.warn({ snapshotId, err: idleError.message }, "snapshot image not released"),
          );
        throw error;
      });
    // A stream was read whole while loading: nothing maps its image any more.
    if (layout === "stream") await mounts.idleAfterUse(snapshotId);
    if (target === "Running") return { ...base, state: "Running", started_at: now };
    // Standby: keep the loaded machine's state as the instance's own standby payload, then end the VMM.
    const handle = await instances.requireHandle(instance);
    await handle.captureDeviceState(files.standbyState);
    await instances.stopVm(instance);
    await instances.flushStandbyPayload(instance.id);
    return { ...base, state: "Standby", has_snapshot: true, stopped_at: now };
  }

  /** The raw memory payload: the stored file, or (compressed) the file inside its verified, mounted image. */
  private async rawPayload(record: SnapshotRecord): Promise<string> {
    const name = record.memory_payload!;
    const id = record.snapshot.id;
    const raw = this.options.store.file(id, name);
    if (record.snapshot.compression_state !== "compressed" && existsSync(raw)) return raw;
    return this.options.mounts.open(id, expectedImage(record, name));
  }

  /** Does a VM map (or hold open) the snapshot's payload now: its raw files, or a file in its mounted image? */
  async payloadInUse(snapshotId: string): Promise<boolean> {
    if ((await filesInUseUnder(this.options.store.dir(snapshotId))).size > 0) return true;
    return this.options.mounts.inUse(snapshotId);
  }

  /** Evicts least recently used raw cache entries beyond the budget; never one a VM maps. Logs, never throws. */
  async enforceCacheBudget(): Promise<void> {
    const { store, rawCacheBudgetBytes, log } = this.options;
    try {
      const report = await enforceCacheBudget(store.cacheRoot, rawCacheBudgetBytes);
      if (report.evicted.length > 0) log.info(report, "raw cache entries evicted");
      if (report.overBudgetBytes > 0) log.warn(report, "raw cache over budget: the rest is in use by running VMs");
    } catch (error) {
      log.warn({ err: (error as Error).message }, "raw cache eviction failed");
    }
  }
}

/** The handler pulls an evicted payload back first (Replicas.ensureLocal); one evicted again since is retried. */
function assertPayloadHere(record: SnapshotRecord): void {
  if (record.evicted_at) {
    throw new ApiError("unavailable", `snapshot ${record.snapshot.id}'s payload was evicted meanwhile: try again`);
  }
}
