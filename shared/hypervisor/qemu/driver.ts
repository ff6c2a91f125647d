/** The `qemu` driver: daemonized qemu-system-x86_64 guests driven over QMP, RAM in a memory-backend file. */
import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, mkdir, open, readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { punchHoleRanges } from "../../codec/holes.ts";
import { loadHolePuncher } from "../../codec/native-backend.ts";
import { HypervisorError, MigrationError, QmpError, VmBootError, VmGoneError } from "../errors.ts";
import { findExecutable, run } from "../exec.ts";
import { type MachineInfo, machineInfoFile, parseHostQemu } from "../machine.ts";
import { isProcessAlive, killProcess, processArgs, waitForExit } from "../process.ts";
import type {
  Accel,
  CaptureResult,
  DiskCopy,
  HypervisorDriver,
  Logger,
  RunningCapture,
  RunningCaptureOptions,
  StopOptions,
  VmHandle,
  VmSpec,
  VmStatus,
} from "../types.ts";
import { type InstanceLayout, instanceLayout, MACHINE_TYPE, qemuArgs, shellQuote } from "./args.ts";
import { QmpClient } from "./qmp.ts";

export const QEMU_BINARY = "qemu-system-x86_64";
const DEFAULT_BOOT_TIMEOUT_MS = 30_000;
const DEFAULT_MIGRATION_TIMEOUT_MS = 600_000;
const DEFAULT_GRACEFUL_STOP_MS = 5_000;
const MIGRATION_POLL_MS = 10;
const MIB = 1024 * 1024;
/** sun_path is 108 bytes including the terminating NUL. */
const MAX_UNIX_SOCKET_PATH = 107;

export interface QemuDriverOptions {
  /** Binary name or path (default qemu-system-x86_64 on PATH). */
  binary?: string;
  /** Accel used when a spec gives none (default `auto`). Configure `tcg` where nested KVM hangs. */
  defaultAccel?: Accel;
  bootTimeoutMs?: number;
  migrationTimeoutMs?: number;
  logger?: Logger;
}

/** What `attach` needs to rebuild a handle; written beside the pidfile while the VM runs. */
const runtimeSchema = z.object({
  memoryFile: z.string(),
  diskFile: z.string(),
  shareMemory: z.boolean(),
  /** Recorded so a host moving to another QEMU can tell what its running VMs were started as. */
  machineType: z.string().optional(),
});
type Runtime = z.infer<typeof runtimeSchema>;

type MigrationInfo = { status?: string; "error-desc"?: string };
type BlockJobInfo = { id: string; status: string; error?: string };
const DISK_COPY_POLL_MS = 20;
/**
 * The speed (bytes/s) a disk copy starts at inside the pause, i.e. held back: unthrottled, the job copies as much as
 * it can before QEMU answers `blockdev-backup` (the whole disk when its pages are cached: 0.5 s for 1 GiB of data),
 * all inside the pause. Guest writes are copied out first at any speed, so the copy stays point-in-time.
 */
const HELD_BACK_BYTES_PER_SECOND = 1;

/** The block node a disk copy writes to, and the guest drive it copies. */
interface DiskCopyTarget {
  id: string;
  file: string;
  device: string;
}

export function createQemuDriver(options: QemuDriverOptions = {}): HypervisorDriver {
  const binary = options.binary ?? QEMU_BINARY;
  const settings: DriverSettings = {
    defaultAccel: options.defaultAccel ?? "auto",
    bootTimeoutMs: options.bootTimeoutMs ?? DEFAULT_BOOT_TIMEOUT_MS,
    migrationTimeoutMs: options.migrationTimeoutMs ?? DEFAULT_MIGRATION_TIMEOUT_MS,
    logger: options.logger,
  };
  return {
    name: "qemu",
    features: ["snapshots", "standby", "fork", "pause"],
    isAvailable: async () => (await findExecutable(binary)) !== null,
    boot: async (spec) => {
      const resolved = await findExecutable(binary);
      if (!resolved) throw new VmBootError(`${binary} not found (apt-get install qemu-system-x86)`);
      return bootVm(resolved, spec, settings);
    },
    attach: (instanceDir) => attachVm(instanceDir, settings),
    hostQemu: async () => {
      const [version, machines] = await Promise.all([run(binary, ["--version"]), run(binary, ["-machine", "help"])]);
      return parseHostQemu(version.stdout, machines.stdout);
    },
  };
}

interface DriverSettings {
  defaultAccel: Accel;
  bootTimeoutMs: number;
  migrationTimeoutMs: number;
  logger: Logger | undefined;
}

/** `auto` means kvm when /dev/kvm can be opened read-write, else tcg. */
export async function resolveAccel(accel: Accel): Promise<"kvm" | "tcg"> {
  if (accel !== "auto") return accel;
  try {
    await access("/dev/kvm", constants.R_OK | constants.W_OK);
    return "kvm";
  } catch {
    return "tcg";
  }
}

async function bootVm(binary: string, spec: VmSpec, settings: DriverSettings): Promise<VmHandle> {
  const layout = instanceLayout(spec.instanceDir);
  if (!Number.isInteger(spec.memoryBytes / MIB) || spec.memoryBytes <= 0) {
    throw new VmBootError(`memoryBytes must be a positive multiple of 1 MiB, got ${spec.memoryBytes}`);
  }
  if (!Number.isInteger(spec.vcpus) || spec.vcpus < 1) throw new VmBootError(`vcpus must be >= 1, got ${spec.vcpus}`);
  if (Buffer.byteLength(layout.qmpSocket) > MAX_UNIX_SOCKET_PATH) {
    throw new VmBootError(`instance dir path too long for a unix socket: ${layout.qmpSocket}`);
  }
  await mkdir(path.dirname(layout.qmpSocket), { recursive: true });
  if (await attachVm(spec.instanceDir, settings)) {
    throw new VmBootError(`a VM is already running in ${spec.instanceDir}`);
  }
  const runtime: Runtime = {
    memoryFile: path.resolve(spec.memoryFile ?? layout.defaultMemoryFile),
    diskFile: path.resolve(spec.diskFile ?? layout.defaultDiskFile),
    shareMemory: spec.shareMemory ?? true,
    machineType: MACHINE_TYPE,
  };
  const memoryReadOnly = spec.memoryReadOnly ?? false;
  if (memoryReadOnly && runtime.shareMemory) throw new VmBootError("a read-only memory file needs shareMemory: false");
  // Files this boot creates are removed again if it fails, so a failed boot leaves nothing behind.
  const created: string[] = [];
  for (const file of [runtime.memoryFile, layout.consoleLog]) {
    if (!(await exists(file))) created.push(file);
  }
  if (spec.incoming && created.includes(runtime.memoryFile)) {
    throw new VmBootError(`memory file ${runtime.memoryFile} does not exist; a restore needs the captured RAM`);
  }
  let pid: number | null = null;
  try {
    if (await createSparseFile(runtime.diskFile, spec.image.manifest.defaultDiskBytes)) created.push(runtime.diskFile);
    const args = qemuArgs({
      layout,
      image: spec.image,
      memoryBytes: spec.memoryBytes,
      vcpus: spec.vcpus,
      accel: await resolveAccel(spec.accel ?? settings.defaultAccel),
      memoryFile: runtime.memoryFile,
      shareMemory: runtime.shareMemory,
      memoryReadOnly,
      diskFile: runtime.diskFile,
      incoming: spec.incoming !== undefined,
      memoryLoad: spec.memoryLoad,
    });
    await writeFile(layout.runtimeFile, JSON.stringify(runtime));
    const bootStarted = performance.now();
    await daemonize(binary, args, settings.bootTimeoutMs);
    pid = await readPid(layout.pidFile);
    if (pid === null) throw new VmBootError(`QEMU started but wrote no pidfile ${layout.pidFile}`);
    const vm: QemuVm = new QemuVm(pid, spec.instanceDir, layout, runtime, settings);
    if (spec.incoming) await vm.loadDeviceState(spec.incoming.deviceStateFile, spec.incoming.paused ?? false);
    settings.logger?.info(
      {
        pid,
        instanceDir: spec.instanceDir,
        incoming: spec.incoming !== undefined,
        bootMs: Math.round(performance.now() - bootStarted),
      },
      "qemu started",
    );
    return vm;
  } catch (error) {
    // A daemonize that timed out may still have left a QEMU behind: find it through its pidfile.
    pid ??= await readPid(layout.pidFile);
    if (pid !== null && (await processArgs(pid))?.includes(layout.pidFile)) {
      killProcess(pid, "SIGKILL");
      await waitForExit(pid, DEFAULT_GRACEFUL_STOP_MS);
    }
    await removeRuntimeFiles(layout);
    await Promise.all(created.map((file) => rm(file, { force: true })));
    throw error instanceof HypervisorError ? error : new VmBootError("QEMU failed to start", "", { cause: error });
  }
}

/** Runs QEMU with -daemonize: the parent exits once the guest is set up (or fails with its reason on stderr). */
function daemonize(binary: string, args: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(binary, args, { timeout: timeoutMs, killSignal: "SIGKILL" }, (error, _stdout, stderr) => {
      if (error) reject(new VmBootError(`${path.basename(binary)} failed to start`, stderr, { cause: error }));
      else resolve();
    });
  });
}

async function attachVm(instanceDir: string, settings: DriverSettings): Promise<QemuVm | null> {
  const layout = instanceLayout(instanceDir);
  const pid = await readPid(layout.pidFile);
  const runtime = await readRuntime(layout.runtimeFile);
  // The pid may have been reused by an unrelated process: it must be the QEMU that owns this pidfile.
  if (pid !== null && runtime && (await isProcessAlive(pid)) && (await processArgs(pid))?.includes(layout.pidFile)) {
    return new QemuVm(pid, instanceDir, layout, runtime, settings);
  }
  await removeRuntimeFiles(layout);
  return null;
}

class QemuVm implements VmHandle {
  readonly memoryFile: string;
  readonly diskFile: string;
  readonly consoleLog: string;
  /** QMP allows one client at a time: operations on this handle run one after another. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly pid: number,
    readonly instanceDir: string,
    private readonly layout: InstanceLayout,
    runtime: Runtime,
    private readonly settings: DriverSettings,
  ) {
    this.memoryFile = runtime.memoryFile;
    this.diskFile = runtime.diskFile;
    this.consoleLog = layout.consoleLog;
  }

  pause(): Promise<void> {
    return this.withQmp(async (qmp) => {
      await qmp.execute("stop");
    });
  }

  resume(): Promise<void> {
    return this.withQmp(async (qmp) => {
      await qmp.execute("cont");
    });
  }

  async status(): Promise<VmStatus> {
    if (!(await isProcessAlive(this.pid))) return { state: "gone" };
    return this.withQmp(async (qmp) => {
      const { status } = await qmp.execute<{ status: string }>("query-status");
      return { state: status === "running" ? "running" : "paused", qemuState: status };
    });
  }

  captureDeviceState(file: string): Promise<CaptureResult> {
    return this.withQmp(async (qmp) => {
      const machine = await machineInfo(qmp);
      const { status } = await qmp.execute<{ status: string }>("query-status");
      if (status === "running") await qmp.execute("stop");
      await setIgnoreShared(qmp);
      return this.migrateToFile(qmp, file, machine);
    });
  }

  captureRunning(options: RunningCaptureOptions): Promise<RunningCapture> {
    return this.withQmp(async (qmp) => {
      const steps: Record<string, number> = {};
      let stepStart = performance.now();
      const step = (name: string) => {
        const now = performance.now();
        steps[name] = Math.round(now - stepStart);
        stepStart = now;
      };
      // What needs no pause comes before it: QEMU's identity, the capability, the copy's target node.
      const machine = await machineInfo(qmp);
      await setIgnoreShared(qmp);
      const target = await this.openDiskCopyTarget(qmp, options.diskFile);
      step("prepareMs");
      const pausedAt = performance.now();
      let diskCopy: DiskCopy | undefined;
      try {
        await qmp.execute("stop");
        step("pauseMs");
        // Both settle before anything else, so `cont` never races a migration still writing the device state.
        const settled = await Promise.allSettled([
          this.migrateToFile(qmp, options.deviceStateFile, machine).then(() => {
            steps.deviceStateMs = Math.round(performance.now() - stepStart);
          }),
          options.whilePaused?.(),
        ]);
        for (const result of settled) if (result.status === "rejected") throw result.reason;
        step("stateAndMemoryMs");
        diskCopy = await this.startDiskCopy(qmp, target);
        step("diskCopyStartMs");
      } finally {
        try {
          await qmp.execute("cont"); // whatever failed: a capture must not leave the guest stopped
        } finally {
          if (!diskCopy) await removeDiskCopyTarget(qmp, target);
        }
      }
      step("resumeMs");
      const downtimeMs = Math.round((performance.now() - pausedAt) * 10) / 10;
      await releaseDiskCopy(qmp, target.id);
      return { downtimeMs, steps, diskCopy };
    });
  }

  private async migrateToFile(qmp: QmpClient, file: string, machine: MachineInfo): Promise<CaptureResult> {
    await mkdir(path.dirname(path.resolve(file)), { recursive: true });
    const started = Date.now();
    try {
      await qmp.execute("migrate", { uri: `exec:cat > ${shellQuote(path.resolve(file))}` });
      await this.waitForMigration(qmp, "capture");
    } catch (error) {
      await rm(file, { force: true });
      throw error;
    }
    const migrationMs = Date.now() - started;
    await writeFile(machineInfoFile(file), JSON.stringify(machine));
    const { size } = await stat(file);
    this.settings.logger?.debug({ pid: this.pid, file, bytes: size, migrationMs }, "device state captured");
    return { deviceStateFile: file, bytes: size, migrationMs };
  }

  /** Creates the copy's sparse target file and opens it as a block node, ready for `startDiskCopy`. */
  private async openDiskCopyTarget(qmp: QmpClient, file: string): Promise<DiskCopyTarget> {
    const target: DiskCopyTarget = {
      id: `snapfleet-copy-${randomBytes(4).toString("hex")}`,
      file: path.resolve(file),
      device: "",
    };
    const [drive] = await qmp.execute<{ device: string }[]>("query-block");
    if (!drive) throw new HypervisorError("the VM has no disk to copy");
    target.device = drive.device;
    const { size } = await stat(this.diskFile);
    await mkdir(path.dirname(target.file), { recursive: true });
    await createSparseFile(target.file, size);
    try {
      await qmp.execute("blockdev-add", {
        driver: "raw",
        "node-name": target.id,
        file: { driver: "file", filename: target.file },
      });
    } catch (error) {
      await rm(target.file, { force: true });
      throw error;
    }
    return target;
  }

  /** Inside the pause: fixes the disk's content now as the copy's, the job held back until the guest runs again. */
  private async startDiskCopy(qmp: QmpClient, target: DiskCopyTarget): Promise<DiskCopy> {
    // A completed device-state capture leaves the disk inactive (handed over to a destination that never
    // comes); the copy needs it active, as `cont` would make it anyway (QEMU 10).
    await qmp.execute("blockdev-set-active", { active: true });
    await qmp.execute("blockdev-backup", {
      "job-id": target.id,
      device: target.device,
      target: target.id,
      sync: "full",
      "auto-dismiss": false,
      speed: HELD_BACK_BYTES_PER_SECOND,
    });
    return { wait: () => this.finishDiskCopy(target.id, target.file) };
  }

  /** Waits for the backup job, removes it and its target node, then punches holes where the copy wrote zeros. */
  private async finishDiskCopy(id: string, target: string): Promise<void> {
    const deadline = Date.now() + this.settings.migrationTimeoutMs;
    let job: BlockJobInfo | undefined;
    while (job?.status !== "concluded") {
      if (Date.now() > deadline) throw new HypervisorError(`disk copy ${id} still ${job?.status} after the deadline`);
      if (job) await sleep(DISK_COPY_POLL_MS);
      job = await this.withQmp(async (qmp) =>
        (await qmp.execute<BlockJobInfo[]>("query-jobs")).find((j) => j.id === id),
      );
      if (!job) throw new HypervisorError(`disk copy ${id} vanished`);
    }
    await this.withQmp(async (qmp) => {
      await qmp.execute("job-dismiss", { id });
      await qmp.execute("blockdev-del", { "node-name": id });
    });
    if (job.error) {
      await rm(target, { force: true });
      throw new HypervisorError(`disk copy failed: ${job.error}`);
    }
    await this.giveBackZeroBlocks(target);
  }

  /**
   * Makes a disk copy as sparse as its source: QEMU writes the source's holes as zeroed (unwritten) extents, which
   * read as holes but hold blocks, and `--dig-holes` skips them; it still frees blocks written with zeros.
   */
  private async giveBackZeroBlocks(file: string): Promise<void> {
    await run("fallocate", ["--dig-holes", file]);
    let puncher: ReturnType<typeof loadHolePuncher>;
    try {
      puncher = loadHolePuncher();
    } catch (error) {
      this.settings.logger?.warn({ err: error, file }, "disk copy keeps QEMU's zeroed extents: no native addon");
      return;
    }
    const handle = await open(file, "r+");
    try {
      punchHoleRanges(puncher, handle.fd, (await handle.stat()).size);
    } finally {
      await handle.close();
    }
  }

  /** Feeds a captured stream to a QEMU started with `-incoming defer -S`, then continues it unless asked not to. */
  loadDeviceState(file: string, stayPaused: boolean): Promise<void> {
    return this.withQmp(async (qmp) => {
      await stat(file).catch((cause: unknown) => {
        throw new MigrationError(`device state file ${file} is not readable`, { cause });
      });
      await setIgnoreShared(qmp);
      const started = performance.now();
      await qmp.execute("migrate-incoming", { uri: `exec:cat ${shellQuote(path.resolve(file))}` });
      await this.waitForMigration(qmp, "restore");
      if (!stayPaused) await qmp.execute("cont");
      const ms = Math.round(performance.now() - started);
      this.settings.logger?.info({ pid: this.pid, instanceDir: this.instanceDir, ms }, "device state loaded");
    });
  }

  async stop(options: StopOptions = {}): Promise<void> {
    const gracefulMs = options.gracefulTimeoutMs ?? DEFAULT_GRACEFUL_STOP_MS;
    // Wait for in-flight operations, but do not let their failure prevent the stop.
    await this.queue.catch(() => undefined);
    if (await isProcessAlive(this.pid)) {
      try {
        const qmp = await QmpClient.connect(this.layout.qmpSocket, {
          connectTimeoutMs: gracefulMs,
          commandTimeoutMs: gracefulMs,
        });
        await qmp.execute("quit").catch(() => undefined); // QEMU may close the socket before answering
        await qmp.close();
      } catch (error) {
        this.settings.logger?.warn({ pid: this.pid, err: error }, "qmp quit failed; killing qemu");
      }
      if (!(await waitForExit(this.pid, gracefulMs))) {
        killProcess(this.pid, "SIGKILL");
        if (!(await waitForExit(this.pid, DEFAULT_GRACEFUL_STOP_MS))) {
          throw new HypervisorError(`QEMU pid ${this.pid} survived SIGKILL`);
        }
      }
    }
    await removeRuntimeFiles(this.layout);
    this.settings.logger?.info({ pid: this.pid, instanceDir: this.instanceDir }, "qemu stopped");
  }

  private withQmp<T>(operation: (qmp: QmpClient) => Promise<T>): Promise<T> {
    const run = this.queue
      .catch(() => undefined)
      .then(async () => {
        if (!(await isProcessAlive(this.pid))) throw new VmGoneError(`QEMU pid ${this.pid} is gone`);
        const qmp = await QmpClient.connect(this.layout.qmpSocket);
        try {
          return await operation(qmp);
        } finally {
          await qmp.close();
        }
      });
    this.queue = run;
    return run;
  }

  private async waitForMigration(qmp: QmpClient, what: "capture" | "restore"): Promise<void> {
    const deadline = Date.now() + this.settings.migrationTimeoutMs;
    for (;;) {
      let info: MigrationInfo;
      try {
        info = await qmp.execute<MigrationInfo>("query-migrate");
      } catch (error) {
        if (error instanceof QmpError && !(await isProcessAlive(this.pid))) {
          throw new MigrationError(`QEMU exited during device state ${what}`, { cause: error });
        }
        throw error;
      }
      if (info.status === "completed") return;
      if (info.status === "failed" || info.status === "cancelled") {
        throw new MigrationError(`device state ${what} ${info.status}: ${info["error-desc"] ?? "no reason given"}`);
      }
      if (Date.now() > deadline) {
        throw new MigrationError(
          `device state ${what} still ${info.status} after ${this.settings.migrationTimeoutMs} ms`,
        );
      }
      await sleep(MIGRATION_POLL_MS);
    }
  }
}

/** The running QEMU's version and concrete machine type (`pc-i440fx-7.2`, not the `pc` alias). */
async function machineInfo(qmp: QmpClient): Promise<MachineInfo> {
  const { qemu } = await qmp.execute<{ qemu: { major: number; minor: number; micro: number } }>("query-version");
  const type = await qmp.execute<string>("qom-get", { path: "/machine", property: "type" });
  return { qemu_version: `${qemu.major}.${qemu.minor}.${qemu.micro}`, machine_type: type.replace(/-machine$/, "") };
}

async function setIgnoreShared(qmp: QmpClient): Promise<void> {
  // Leaves share=on RAM out of the stream: it already lives in the memory file.
  await qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: true }] });
}

/** Lets a held-back copy job run at full speed, now that the guest runs. */
async function releaseDiskCopy(qmp: QmpClient, id: string): Promise<void> {
  try {
    await qmp.execute("block-job-set-speed", { device: id, speed: 0 });
  } catch (error) {
    // A small disk may be copied whole before the limit bites: a job past running has nothing to release.
    const job = (await qmp.execute<BlockJobInfo[]>("query-jobs")).find((j) => j.id === id);
    if (!job || ["created", "running", "paused", "ready", "standby"].includes(job.status)) throw error;
  }
}

/** Closes a copy target that no job took over, and removes its file. */
async function removeDiskCopyTarget(qmp: QmpClient, target: DiskCopyTarget): Promise<void> {
  await qmp.execute("blockdev-del", { "node-name": target.id }).catch(() => undefined);
  await rm(target.file, { force: true });
}

/** Creates a sparse file of `bytes` unless it exists; returns whether it did. */
async function createSparseFile(file: string, bytes: number): Promise<boolean> {
  try {
    const handle = await open(file, "wx");
    try {
      await handle.truncate(bytes);
    } finally {
      await handle.close();
    }
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  }
}

async function readPid(pidFile: string): Promise<number | null> {
  try {
    const pid = Number.parseInt(await readFile(pidFile, "utf8"), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

async function readRuntime(file: string): Promise<Runtime | null> {
  try {
    return runtimeSchema.parse(JSON.parse(await readFile(file, "utf8")));
  } catch {
    return null;
  }
}

async function removeRuntimeFiles(layout: InstanceLayout): Promise<void> {
  await Promise.all([layout.qmpSocket, layout.pidFile, layout.runtimeFile].map((file) => rm(file, { force: true })));
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
