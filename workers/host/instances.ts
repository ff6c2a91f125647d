// The host agent's instances: each lives in `<DATA_DIR>/instances/<id>/` with its record (instance.json: the
// instance, its version and its last event), disk, guest RAM file and console log. The record here is the authority;
// events and announcements mirror it to the read model. Every job is safe to run twice (see shared/host-records.ts).
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { type CrashPoint, crashPoint } from "../../shared/crash-points.ts";
import { ApiError, notFound } from "../../shared/errors.ts";
import { subjectOf } from "../../shared/events/catalog.ts";
import type { EventStream } from "../../shared/events/stream.ts";
import { fsyncPath, listDirectory, skipUnparsable, writeFileDurable } from "../../shared/files.ts";
import {
  LAST_EVENT,
  madeBy,
  nextStamp,
  publishTombstone,
  type TombstoneStore,
  type Versioned,
} from "../../shared/host-records.ts";
import { rotateConsoleLog, tailConsoleLog } from "../../shared/hypervisor/console-log.ts";
import { ImageError } from "../../shared/hypervisor/errors.ts";
import { type GuestImage, loadImage } from "../../shared/hypervisor/image.ts";
import { assertPayloadFile, type PayloadFile } from "../../shared/hypervisor/payload-files.ts";
import { processUsage } from "../../shared/hypervisor/process.ts";
import type { HypervisorDriver, VmHandle } from "../../shared/hypervisor/types.ts";
import {
  type InstanceFiles,
  instanceFiles,
  type MemoryMode,
  readMemoryMode,
  writeMemoryMode,
} from "../../shared/instances/files.ts";
import { compressedPayload } from "../../shared/instances/standby-memory.ts";
import { assertOperationAllowed } from "../../shared/instances/transitions.ts";
import { KeyedMutex } from "../../shared/keyed-mutex.ts";
import type { Logger } from "../../shared/logger.ts";
import { describeUnreadable, quarantineDirectory } from "../../shared/quarantine.ts";
import { parseSize } from "../../shared/schemas/common.ts";
import {
  INSTANCE_SCHEMA,
  type Instance,
  type InstanceStats,
  RUNNABLE_INSTANCE,
  type StandbyCompressionStatus,
} from "../../shared/schemas/instance.ts";
import { z } from "../../shared/zod.ts";
import { assertFreeMemory } from "./free-memory.ts";

export const INSTANCE_RECORD = z.object({
  instance: INSTANCE_SCHEMA,
  version: z.number().int().nonnegative(),
  last_event: LAST_EVENT.nullable(),
});

export type InstanceRecord = z.infer<typeof INSTANCE_RECORD>;

/** The request limits, again, on every instance a host is about to run (a fork takes its source from a record). */
export function assertRunnable(instance: Instance): void {
  const parsed = RUNNABLE_INSTANCE.safeParse(instance);
  if (parsed.success) return;
  const problems = parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`).join("; ");
  throw new ApiError("invalid_request", `instance ${instance.id} is outside the limits: ${problems}`);
}

type InstanceEventType = "instance.created" | "instance.updated" | "instance.forked" | "instance.restored";

const GRACEFUL_STOP_MS = 3_000;
/** States in which the instance has a QEMU process that reconcile must find alive. */
const LIVE_VM_STATES: readonly string[] = ["Running", "Paused", "Initializing"];

export type { InstanceFiles };

export interface InstanceManagerOptions {
  dataDir: string;
  imagesDir: string;
  hostId: string;
  drivers: ReadonlyMap<string, HypervisorDriver>;
  events: EventStream;
  tombstones: TombstoneStore;
  log: Logger;
  /** Told the memory file of each VM that stopped (a snapshot image mapped by it may now be unmounted). */
  vmStopped?: (memoryFile: string) => Promise<void>;
}

export interface CommandResult {
  instance: Instance;
  event_id: string;
}

export class InstanceManager {
  readonly locks = new KeyedMutex();
  private readonly handles = new Map<string, VmHandle>();

  constructor(private readonly options: InstanceManagerOptions) {}

  files(id: string): InstanceFiles {
    return instanceFiles(this.options.dataDir, id);
  }

  driver(name: string): HypervisorDriver {
    const driver = this.options.drivers.get(name);
    if (!driver) {
      const available = [...this.options.drivers.keys()].join(", ") || "none";
      throw new ApiError("not_supported", `hypervisor ${name} is not available on this host; available: ${available}`);
    }
    return driver;
  }

  async image(name: string): Promise<GuestImage> {
    try {
      return await loadImage(name, this.options.imagesDir);
    } catch (error) {
      if (error instanceof ImageError) {
        const available = await readdir(this.options.imagesDir).catch(() => []);
        throw new ApiError("invalid_request", `unknown image ${name}; available: ${available.join(", ") || "none"}`);
      }
      throw error;
    }
  }

  async read(id: string): Promise<Instance> {
    return (await this.readRecord(id)).instance;
  }

  async readRecord(id: string): Promise<InstanceRecord> {
    const record = await this.findRecord(id);
    if (!record) throw notFound("instance", id);
    return record;
  }

  async findRecord(id: string): Promise<InstanceRecord | undefined> {
    let text: string;
    try {
      text = await readFile(this.files(id).record, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      throw error;
    }
    const value = JSON.parse(text) as Record<string, unknown>;
    // Records written before versions existed hold the bare instance.
    if (!("instance" in value)) return { instance: INSTANCE_SCHEMA.parse(value), version: 0, last_event: null };
    return INSTANCE_RECORD.parse(value);
  }

  /**
   * Writes the instance's next version with its event, then appends that event. A crash in between leaves a record
   * whose event the next announcement (and a re-run of the job) carries.
   */
  async commit(
    instance: Instance,
    type: InstanceEventType,
    options: { jobId?: string; snapshotId?: string; previous?: Versioned; crashAt?: CrashPoint } = {},
  ): Promise<CommandResult> {
    const previous = options.previous ?? (await this.findRecord(instance.id));
    // Standby compression describes Standby RAM only: any other state leaves it behind.
    if (instance.state !== "Standby" && instance.standby_compression) {
      const { standby_compression: _left, ...rest } = instance;
      instance = rest;
    }
    const record: InstanceRecord = { instance, ...nextStamp(previous, type, options.jobId, options.snapshotId) };
    await writeFileDurable(this.files(instance.id).record, `${JSON.stringify(record, null, 2)}\n`);
    if (options.crashAt) crashPoint(options.crashAt);
    return this.publish(record);
  }

  /** The instance as its record has it now, with its last event (appended again: consumers dedupe by its id). */
  async publishCurrent(id: string): Promise<CommandResult> {
    return this.publish(await this.readRecord(id));
  }

  /** Appends the record's last event (again): consumers dedupe by its id. */
  async publish(record: InstanceRecord): Promise<CommandResult> {
    const { instance, version, last_event: last } = record;
    if (!last) return { instance, event_id: "" };
    const subject = subjectOf.instance(instance.id);
    const stamp = { id: last.id, version, occurred_at: last.occurred_at };
    const type = last.type as InstanceEventType;
    const { event } =
      type === "instance.forked" || type === "instance.restored"
        ? await this.options.events.append(type, subject, { instance, snapshot_id: last.snapshot_id ?? "" }, stamp)
        : await this.options.events.append(type, subject, { instance }, stamp);
    return { instance, event_id: event.id };
  }

  memoryMode(id: string): Promise<MemoryMode> {
    return readMemoryMode(this.files(id));
  }

  async list(): Promise<Instance[]> {
    return (await this.listRecords()).map((record) => record.instance);
  }

  async listRecords(): Promise<InstanceRecord[]> {
    const records: InstanceRecord[] = [];
    for (const id of await this.instanceDirs()) {
      // a directory without a valid record is a half-created instance: removeHalfCreated() clears it at start
      const record = await this.findRecord(id).catch(skipUnparsable);
      if (record) records.push(record);
    }
    return records;
  }

  private instanceDirs(): Promise<string[]> {
    return listDirectory(path.join(this.options.dataDir, "instances"));
  }

  /**
   * At start, before any job runs: an instance directory with no record is a create or fork that died midway (its
   * job re-runs from scratch, or never comes back), and a directory with a tombstone is a delete that died midway.
   * Stops whatever VM such a directory still runs and removes it. A directory whose record (or tombstone) is there
   * but cannot be read or parsed is quarantined whole, and a VM it runs is left running.
   */
  async removeHalfDone(): Promise<void> {
    for (const id of await this.instanceDirs()) {
      if (id.startsWith(".")) continue;
      let unfinished: boolean;
      try {
        unfinished = (await this.options.tombstones.read("instance", id)) !== undefined || !(await this.findRecord(id));
      } catch (error) {
        await this.quarantine(id, error);
        continue;
      }
      if (!unfinished) continue;
      await this.clearUnfinished(id);
      this.options.log.warn({ instanceId: id }, "removed an instance left half created or half deleted");
    }
  }

  /** Moves an instance directory whose record cannot be understood aside, whole; its VM, if any, runs on. */
  private async quarantine(id: string, error: unknown): Promise<void> {
    const { dataDir, log } = this.options;
    const reason = describeUnreadable(error);
    const entry = await quarantineDirectory(dataDir, "instance", id, this.files(id).dir, reason).catch(
      (moveError: Error) => {
        log.error(
          { instanceId: id, reason, err: moveError.message },
          "unreadable instance left in place: cannot move it aside",
        );
        return undefined;
      },
    );
    if (entry)
      log.error({ instanceId: id, reason, path: entry.path }, "instance with an unreadable record quarantined");
  }

  /** Stops a VM found by its directory alone (its record may be missing). */
  private async stopVmOfDir(id: string): Promise<void> {
    this.handles.delete(id);
    for (const driver of this.options.drivers.values()) {
      const handle = await driver.attach(this.files(id).dir).catch(() => null);
      await handle?.stop({ gracefulTimeoutMs: GRACEFUL_STOP_MS }).catch(() => {});
    }
  }

  async handle(instance: Instance): Promise<VmHandle | null> {
    const known = this.handles.get(instance.id);
    if (known) return known;
    const attached = await this.driver(instance.hypervisor).attach(this.files(instance.id).dir);
    if (attached) this.handles.set(instance.id, attached);
    return attached;
  }

  /**
   * Boots the instance's VM: from its disk with fresh RAM, or from a device-state stream (`incoming`). With
   * `privateMemory`, RAM maps `memoryFile` copy-on-write and the file is never written; `readOnlyMemory` says the
   * file is on a read-only mount (a compressed snapshot's image).
   */
  async boot(
    instance: Instance,
    options: {
      incoming?: string;
      memoryFile?: string;
      privateMemory?: boolean;
      readOnlyMemory?: boolean;
      paused?: boolean;
    } = {},
  ): Promise<VmHandle> {
    assertRunnable(instance);
    const files = this.files(instance.id);
    const image = await this.image(instance.image);
    const memoryFile = options.memoryFile ?? files.memory;
    await this.assertPayloadFiles(instance, image, memoryFile, options.incoming);
    const mode: MemoryMode = options.privateMemory ? "private" : "shared";
    await writeMemoryMode(files, mode);
    const handle = await this.driver(instance.hypervisor).boot({
      instanceDir: files.dir,
      image,
      memoryBytes: parseSize(instance.size)!,
      vcpus: instance.vcpus,
      memoryFile,
      shareMemory: mode === "shared",
      memoryReadOnly: options.readOnlyMemory,
      diskFile: files.disk,
      memoryLoad: instance.memory_load && {
        fillPercent: instance.memory_load.fill_percent,
        dirtyMiBPerSecond: instance.memory_load.dirty_mib_per_second,
      },
      incoming: options.incoming ? { deviceStateFile: options.incoming, paused: options.paused } : undefined,
    });
    this.handles.set(instance.id, handle);
    return handle;
  }

  /**
   * Every file QEMU will map or read: no links, regular files inside the data dir (kernel and initrd inside the
   * images dir), the RAM file of the guest's size. A RAM file not there yet is one QEMU creates for a fresh boot.
   */
  private async assertPayloadFiles(
    instance: Instance,
    image: GuestImage,
    memoryFile: string,
    incoming: string | undefined,
  ): Promise<void> {
    const { dataDir, imagesDir } = this.options;
    const checks: PayloadFile[] = [
      { file: this.files(instance.id).disk, root: dataDir, what: "disk" },
      { file: image.kernelPath, root: imagesDir, what: "kernel" },
      { file: image.initrdPath, root: imagesDir, what: "initrd" },
    ];
    if (incoming || existsSync(memoryFile)) {
      checks.push({ file: memoryFile, root: dataDir, what: "memory file", size: parseSize(instance.size)! });
    }
    if (incoming) checks.push({ file: incoming, root: dataDir, what: "device state" });
    for (const check of checks) await assertPayloadFile(check);
  }

  /** An empty sparse file of the guest's RAM size: the base a private-memory VM maps when its RAM comes in a stream. */
  async blankMemoryFile(instance: Instance): Promise<string> {
    const file = this.files(instance.id).memory;
    await rm(file, { force: true });
    await writeFile(file, "");
    await truncate(file, parseSize(instance.size)!);
    return file;
  }

  async stopVm(instance: Instance): Promise<void> {
    const handle = await this.handle(instance);
    this.handles.delete(instance.id);
    await handle?.stop({ gracefulTimeoutMs: GRACEFUL_STOP_MS });
    if (handle) await this.options.vmStopped?.(handle.memoryFile);
  }

  async create(prepared: Instance, jobId?: string): Promise<CommandResult> {
    this.driver(prepared.hypervisor); // not_supported before any file is made
    await this.image(prepared.image);
    const files = this.files(prepared.id);
    return this.locks.run(prepared.id, async () => {
      // The id is new per request: a record with it means this job ran before and got that far.
      const existing = await this.findRecord(prepared.id);
      if (existing) return this.publish(existing);
      await this.clearUnfinished(prepared.id);
      await mkdir(files.dir, { recursive: true });
      try {
        await writeFile(files.disk, "");
        await truncate(files.disk, parseSize(prepared.overlay_size)!);
        await this.boot(prepared);
        crashPoint("instance-create.after-boot");
        const now = new Date().toISOString();
        return await this.commit(
          { ...prepared, state: "Running", started_at: now, host_id: this.options.hostId },
          "instance.created",
          { jobId, crashAt: "instance-create.after-record" },
        );
      } catch (error) {
        if (await this.findRecord(prepared.id).catch(() => undefined)) throw error; // durable: only the append failed
        await this.stopVm(prepared).catch(() => {});
        await rm(files.dir, { recursive: true, force: true });
        throw error;
      }
    });
  }

  /** What an earlier run of a create or fork left without a record: its VM and files, removed before trying again. */
  async clearUnfinished(id: string): Promise<void> {
    if (!existsSync(this.files(id).dir)) return;
    await this.stopVmOfDir(id);
    await rm(this.files(id).dir, { recursive: true, force: true });
  }

  stop(id: string, jobId?: string): Promise<CommandResult> {
    return this.locks.run(id, async () => {
      const current = await this.readRecord(id);
      if (madeBy(current, jobId)) return this.publish(current);
      const instance = current.instance;
      assertOperationAllowed("stop", instance);
      await this.stopVm(instance);
      await this.discardMemoryState(id);
      crashPoint("instance-stop.after-vm-stopped");
      return this.commit(
        { ...instance, state: "Stopped", state_error: null, has_snapshot: false, stopped_at: new Date().toISOString() },
        "instance.updated",
        { jobId, previous: current, crashAt: "instance-stop.after-record" },
      );
    });
  }

  start(id: string, jobId?: string): Promise<CommandResult> {
    return this.locks.run(id, async () => {
      const current = await this.readRecord(id);
      if (madeBy(current, jobId)) return this.publish(current);
      const instance = current.instance;
      assertOperationAllowed("start", instance);
      await this.discardMemoryState(id);
      await this.boot(instance);
      return this.commit(
        { ...instance, state: "Running", state_error: null, started_at: new Date().toISOString() },
        "instance.updated",
        { jobId, previous: current },
      );
    });
  }

  /** Captures device state (RAM is already in the shared memory file), then ends the VMM. */
  standby(id: string, jobId?: string): Promise<CommandResult> {
    return this.locks.run(id, async () => {
      const current = await this.readRecord(id);
      if (madeBy(current, jobId)) return this.publish(current);
      const instance = current.instance;
      assertOperationAllowed("standby", instance);
      const handle = await this.requireHandle(instance);
      await handle.captureDeviceState(this.files(id).standbyState);
      await this.stopVm(instance);
      await this.flushStandbyPayload(id);
      return this.commit(
        { ...instance, state: "Standby", has_snapshot: true, stopped_at: new Date().toISOString() },
        "instance.updated",
        { jobId, previous: current },
      );
    });
  }

  restore(id: string, jobId?: string): Promise<CommandResult> {
    return this.locks.run(id, async () => {
      const current = await this.readRecord(id);
      if (madeBy(current, jobId)) return this.publish(current);
      const instance = current.instance;
      assertOperationAllowed("restore", instance);
      await assertFreeMemory(parseSize(instance.size)!, this.options.hostId);
      // A private-memory VM's standby stream holds its RAM: it comes back onto a blank file of its own.
      const privateMemory = (await this.memoryMode(id)) === "private";
      await this.boot(instance, {
        incoming: this.files(id).standbyState,
        privateMemory,
        memoryFile: privateMemory ? await this.blankMemoryFile(instance) : undefined,
      });
      await rm(this.files(id).standbyState, { force: true });
      return this.commit(
        { ...instance, state: "Running", has_snapshot: false, started_at: new Date().toISOString() },
        "instance.updated",
        { jobId, previous: current },
      );
    });
  }

  /**
   * Publishes where a Standby instance's RAM compression stands (`read` derives it from the files, under this
   * instance's lock); false when the instance is not in Standby or nothing changed.
   */
  refreshStandbyCompression(id: string, read: () => Promise<StandbyCompressionStatus | undefined>): Promise<boolean> {
    return this.locks.run(id, async () => {
      const current = await this.findRecord(id);
      if (current?.instance.state !== "Standby") return false;
      const status = await read();
      if (JSON.stringify(status) === JSON.stringify(current.instance.standby_compression)) return false;
      const { standby_compression: _old, ...instance } = current.instance;
      await this.commit(status ? { ...instance, standby_compression: status } : instance, "instance.updated", {
        previous: current,
      });
      return true;
    });
  }

  /** Stops the VM, writes the tombstone (the durable decision), removes the files, announces the deletion. */
  delete(id: string, jobId?: string): Promise<CommandResult> {
    const { tombstones, events } = this.options;
    return this.locks.run(id, async () => {
      let tombstone = await tombstones.read("instance", id);
      if (!tombstone) {
        const record = await this.readRecord(id);
        await this.stopVm(record.instance);
        const instance: Instance = { ...record.instance, state: "Stopped", stopped_at: new Date().toISOString() };
        const stamp = nextStamp(record, "instance.deleted", jobId);
        tombstone = { kind: "instance", deleted_at: stamp.last_event.occurred_at, ...stamp, instance };
        await tombstones.write(tombstone);
        crashPoint("instance-delete.after-tombstone");
      } else {
        await this.stopVmOfDir(id); // a delete that died midway, or a re-run: finish it
      }
      await rm(this.files(id).dir, { recursive: true, force: true });
      if (tombstone.kind !== "instance") throw new Error(`tombstone of instance ${id} is not an instance's`);
      return { instance: tombstone.instance, event_id: await publishTombstone(events, tombstone) };
    });
  }

  /**
   * Flushes what a standby leaves on disk before its record says Standby: the device state (written by QEMU through
   * `cat`, never fsynced) and, for a VM whose RAM is its own shared memory.raw, that file's dirty pages.
   */
  async flushStandbyPayload(id: string): Promise<void> {
    const files = this.files(id);
    await fsyncPath(files.standbyState);
    if ((await this.memoryMode(id)) === "shared") await fsyncPath(files.memory);
  }

  async logs(id: string, tail: number): Promise<{ lines: string[] }> {
    await this.read(id);
    return { lines: await tailConsoleLog(this.files(id).consoleLog, tail) };
  }

  /** What the guest's QEMU process uses (GET /instances/{id}/stats); 409 when it has no running VM. */
  async stats(id: string): Promise<InstanceStats> {
    const instance = await this.read(id);
    const handle = await this.requireHandle(instance);
    const usage = await processUsage(handle.pid);
    if (!usage) throw new ApiError("invalid_state", `instance ${instance.name}'s QEMU process is gone`);
    const allocated = parseSize(instance.size)!;
    return {
      instance_id: instance.id,
      instance_name: instance.name,
      allocated_memory_bytes: allocated,
      allocated_vcpus: instance.vcpus,
      cpu_seconds: usage.cpuSeconds,
      memory_rss_bytes: usage.rssBytes,
      memory_vms_bytes: usage.vmsBytes,
      memory_utilization_ratio: allocated > 0 ? usage.rssBytes / allocated : null,
      network_rx_bytes: 0,
      network_tx_bytes: 0,
    };
  }

  /** Rotates every console log over `maxBytes` (copy-truncate: QEMU keeps appending); returns the instance ids. */
  async rotateConsoleLogs(maxBytes: number): Promise<string[]> {
    const rotated: string[] = [];
    for (const id of await this.instanceDirs())
      if (await rotateConsoleLog(this.files(id).consoleLog, maxBytes)) rotated.push(id);
    return rotated;
  }

  async requireHandle(instance: Instance): Promise<VmHandle> {
    const handle = await this.handle(instance);
    if (!handle) {
      throw new ApiError("invalid_state", `instance ${instance.name} has no running VM (its QEMU process is gone)`);
    }
    return handle;
  }

  /** RAM and device state only mean something together with a standby; a stopped instance keeps its disk alone. */
  async discardMemoryState(id: string): Promise<void> {
    const files = this.files(id);
    const compressed = [files.memory, files.standbyState].map(compressedPayload);
    const standbyFiles = [files.memory, files.standbyState, ...compressed, files.standbyCompression];
    await Promise.all(standbyFiles.map((file) => rm(file, { force: true })));
  }

  /**
   * After a worker start, and periodically: re-attach to VMs that outlived the worker, and mark instances whose
   * QEMU is gone as Unknown with the reason. Emits an update only where the state changed.
   */
  async reconcile(): Promise<void> {
    const hasVm = (state: string) => LIVE_VM_STATES.includes(state);
    for (const instance of (await this.list()).filter((listed) => hasVm(listed.state))) {
      await this.locks.run(instance.id, async () => {
        // Read again under the lock: an operation may have changed it since the listing.
        const current = await this.read(instance.id).catch(() => undefined);
        if (!current || !hasVm(current.state)) return;
        const handle = await this.handle(current).catch(() => null);
        const status = handle
          ? await handle.status().catch(() => ({ state: "gone" as const }))
          : { state: "gone" as const };
        if (status.state !== "gone") return;
        this.handles.delete(current.id);
        this.options.log.warn({ instanceId: current.id }, "QEMU process is gone: marking the instance Unknown");
        await this.commit(
          {
            ...current,
            state: "Unknown",
            state_error: "the QEMU process of this instance is gone (it exited or was killed); stop or delete it",
          },
          "instance.updated",
        );
      });
    }
  }
}
