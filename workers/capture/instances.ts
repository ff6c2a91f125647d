// The host agent's instances: each lives in `<DATA_DIR>/instances/<id>/` with its record (instance.json),
// disk, guest RAM file and console log. The record here is the authority; events mirror it to the read model.
import { mkdir, readdir, readFile, rm, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { ApiError, notFound } from "../../shared/errors.ts";
import { subjectOf } from "../../shared/events/catalog.ts";
import type { EventStream } from "../../shared/events/stream.ts";
import { tailLines, writeFileAtomic } from "../../shared/files.ts";
import { ImageError } from "../../shared/hypervisor/errors.ts";
import { type GuestImage, loadImage } from "../../shared/hypervisor/image.ts";
import type { HypervisorDriver, VmHandle } from "../../shared/hypervisor/types.ts";
import { type InstanceFiles, instanceFiles } from "../../shared/instances/files.ts";
import { compressedPayload } from "../../shared/instances/standby-memory.ts";
import { assertOperationAllowed } from "../../shared/instances/transitions.ts";
import { KeyedMutex } from "../../shared/keyed-mutex.ts";
import type { Logger } from "../../shared/logger.ts";
import { parseSize } from "../../shared/schemas/common.ts";
import { INSTANCE_SCHEMA, type Instance } from "../../shared/schemas/instance.ts";

/**
 * `shared`: the VM's RAM is its own memory.raw, mapped shared, so captures leave RAM out of the device state.
 * `private`: the VM maps a file it does not own (a snapshot's RAM) copy-on-write, so captures carry its RAM.
 */
export type MemoryMode = "shared" | "private";
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
  log: Logger;
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
    let text: string;
    try {
      text = await readFile(this.files(id).record, "utf8");
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ENOENT") throw notFound("instance", id);
      throw error;
    }
    return INSTANCE_SCHEMA.parse(JSON.parse(text));
  }

  async save(instance: Instance): Promise<void> {
    await writeFileAtomic(this.files(instance.id).record, `${JSON.stringify(instance, null, 2)}\n`);
  }

  /** Saves the record, then appends the event that carries it. */
  async commit(
    instance: Instance,
    type: "instance.created" | "instance.updated" | "instance.deleted" | "instance.forked" | "instance.restored",
    snapshotId?: string,
  ): Promise<CommandResult> {
    if (type !== "instance.deleted") await this.save(instance);
    const subject = subjectOf.instance(instance.id);
    const { event } =
      type === "instance.forked" || type === "instance.restored"
        ? await this.options.events.append(type, subject, { instance, snapshot_id: snapshotId! })
        : await this.options.events.append(type, subject, { instance });
    return { instance, event_id: event.id };
  }

  async memoryMode(id: string): Promise<MemoryMode> {
    const text = await readFile(this.files(id).memoryMode, "utf8").catch(() => "shared");
    return text.trim() === "private" ? "private" : "shared";
  }

  async list(): Promise<Instance[]> {
    const dir = path.join(this.options.dataDir, "instances");
    const ids = await readdir(dir).catch(() => [] as string[]);
    const instances: Instance[] = [];
    for (const id of ids) {
      try {
        instances.push(await this.read(id));
      } catch {
        // a directory without a valid record is a half-created instance: reconcile removes it
      }
    }
    return instances;
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
   * `privateMemory`, RAM maps `memoryFile` copy-on-write and the file is never written.
   */
  async boot(
    instance: Instance,
    options: { incoming?: string; memoryFile?: string; privateMemory?: boolean; paused?: boolean } = {},
  ): Promise<VmHandle> {
    const files = this.files(instance.id);
    const mode: MemoryMode = options.privateMemory ? "private" : "shared";
    await writeFile(files.memoryMode, mode);
    const handle = await this.driver(instance.hypervisor).boot({
      instanceDir: files.dir,
      image: await this.image(instance.image),
      memoryBytes: parseSize(instance.size)!,
      vcpus: instance.vcpus,
      memoryFile: options.memoryFile ?? files.memory,
      shareMemory: mode === "shared",
      diskFile: files.disk,
      incoming: options.incoming ? { deviceStateFile: options.incoming, paused: options.paused } : undefined,
    });
    this.handles.set(instance.id, handle);
    return handle;
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
  }

  async create(prepared: Instance): Promise<CommandResult> {
    this.driver(prepared.hypervisor); // not_supported before any file is made
    await this.image(prepared.image);
    const files = this.files(prepared.id);
    return this.locks.run(prepared.id, async () => {
      await mkdir(files.dir, { recursive: true });
      try {
        await writeFile(files.disk, "");
        await truncate(files.disk, parseSize(prepared.overlay_size)!);
        await this.boot(prepared);
        const now = new Date().toISOString();
        return await this.commit(
          { ...prepared, state: "Running", started_at: now, host_id: this.options.hostId },
          "instance.created",
        );
      } catch (error) {
        await this.stopVm(prepared).catch(() => {});
        await rm(files.dir, { recursive: true, force: true });
        throw error;
      }
    });
  }

  stop(id: string): Promise<CommandResult> {
    return this.locks.run(id, async () => {
      const instance = await this.read(id);
      assertOperationAllowed("stop", instance);
      await this.stopVm(instance);
      await this.discardMemoryState(id);
      return this.commit(
        { ...instance, state: "Stopped", state_error: null, has_snapshot: false, stopped_at: new Date().toISOString() },
        "instance.updated",
      );
    });
  }

  start(id: string): Promise<CommandResult> {
    return this.locks.run(id, async () => {
      const instance = await this.read(id);
      assertOperationAllowed("start", instance);
      await this.discardMemoryState(id);
      await this.boot(instance);
      return this.commit(
        { ...instance, state: "Running", state_error: null, started_at: new Date().toISOString() },
        "instance.updated",
      );
    });
  }

  /** Captures device state (RAM is already in the shared memory file), then ends the VMM. */
  standby(id: string): Promise<CommandResult> {
    return this.locks.run(id, async () => {
      const instance = await this.read(id);
      assertOperationAllowed("standby", instance);
      const handle = await this.requireHandle(instance);
      await handle.captureDeviceState(this.files(id).standbyState);
      await this.stopVm(instance);
      return this.commit(
        { ...instance, state: "Standby", has_snapshot: true, stopped_at: new Date().toISOString() },
        "instance.updated",
      );
    });
  }

  restore(id: string): Promise<CommandResult> {
    return this.locks.run(id, async () => {
      const instance = await this.read(id);
      assertOperationAllowed("restore", instance);
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
      );
    });
  }

  delete(id: string): Promise<CommandResult> {
    return this.locks.run(id, async () => {
      const instance = await this.read(id);
      await this.stopVm(instance);
      await rm(this.files(id).dir, { recursive: true, force: true });
      return this.commit({ ...instance, state: "Stopped", stopped_at: new Date().toISOString() }, "instance.deleted");
    });
  }

  async logs(id: string, tail: number): Promise<{ lines: string[] }> {
    await this.read(id);
    return { lines: await tailLines(this.files(id).consoleLog, tail) };
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
    await Promise.all([files.memory, files.standbyState, ...compressed].map((file) => rm(file, { force: true })));
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
