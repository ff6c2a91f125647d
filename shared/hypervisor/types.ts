/** The hypervisor driver seam: what the workers need from any VMM, kept small. */
import type { GuestImage } from "./image.ts";
import type { HostQemu } from "./machine.ts";

export const HYPERVISOR_NAMES = ["qemu", "qemu-microvm", "firecracker", "cloud-hypervisor", "vz"] as const;
export type HypervisorName = (typeof HYPERVISOR_NAMES)[number];

/** `auto` picks kvm when /dev/kvm is usable, else tcg. Nested KVM hangs on our build machines: configure tcg there. */
export type Accel = "kvm" | "tcg" | "auto";

/** Minimal pino-compatible logger. */
export interface Logger {
  debug(object: object, message?: string): void;
  info(object: object, message?: string): void;
  warn(object: object, message?: string): void;
}

/** A dense guest: the share of RAM its init fills at boot, and MiB it rewrites every second (scripts/build-image.ts). */
export interface MemoryLoad {
  fillPercent: number;
  dirtyMiBPerSecond: number;
}

export interface VmSpec {
  /** Owned by this VM: QMP socket, pidfile, console log and (by default) disk and memory files live here. */
  instanceDir: string;
  image: GuestImage;
  memoryBytes: number;
  vcpus: number;
  /** Defaults to the driver's configured accel. */
  accel?: Accel;
  /** Guest RAM file (default `<instanceDir>/memory.raw`, created by QEMU if missing). */
  memoryFile?: string;
  /**
   * true (default): a shared mapping; guest writes land in the file and captures leave RAM out of the stream.
   * false: a private copy-on-write mapping; the file is never modified, so many forks can map one stored file,
   * but a capture of such a VM carries its RAM in the device-state stream.
   */
  shareMemory?: boolean;
  /**
   * The memory file lives on a read-only file system (a snapshot's squashfs image, mounted): QEMU opens it
   * read-only and the guest's RAM stays writable, copy-on-write (`readonly=on,rom=off`). Needs shareMemory false.
   */
  memoryReadOnly?: boolean;
  /** Raw disk (default `<instanceDir>/disk.raw`, created sparse at the image's default size if missing). */
  diskFile?: string;
  /** Fill and dirty guest RAM from the init (passed on the kernel command line); none by default. */
  memoryLoad?: MemoryLoad;
  /** Boot from a captured payload instead of the kernel. */
  incoming?: {
    deviceStateFile: string;
    /** Leave the guest paused after loading (default false: continue it). */
    paused?: boolean;
  };
}

export type VmRunState = "running" | "paused" | "gone";

export interface VmStatus {
  state: VmRunState;
  /** QEMU's own run state (`running`, `paused`, `postmigrate`, …) when the process is alive. */
  qemuState?: string;
}

export interface StopOptions {
  /** How long to wait for QEMU to quit before SIGKILL (default 5000 ms). */
  gracefulTimeoutMs?: number;
}

export interface CaptureResult {
  deviceStateFile: string;
  bytes: number;
  /** Milliseconds the migration itself took (from `migrate` to `completed`). */
  migrationMs: number;
}

/** A point-in-time copy of a VM's disk that QEMU makes while the guest runs on. */
export interface DiskCopy {
  /** Resolves when the copy is complete (and sparse); rejects if QEMU failed it. */
  wait(): Promise<void>;
}

export interface RunningCaptureOptions {
  deviceStateFile: string;
  /** Receives the disk as it was in the pause; copied after the guest runs again. */
  diskFile: string;
  /** Runs inside the pause, alongside the device state (a copy of a shared memory file). */
  whilePaused?: () => Promise<unknown>;
}

export interface RunningCapture {
  /** From `stop` to `cont` answered. */
  downtimeMs: number;
  /**
   * Milliseconds per step: `prepareMs` before the pause; in it `pauseMs`, `stateAndMemoryMs` (of which
   * `deviceStateMs` for the device state alone), `diskCopyStartMs`, `resumeMs`.
   */
  steps: Record<string, number>;
  diskCopy: DiskCopy;
}

/** A running (or paused) guest. Every method is safe to call after a worker restart via `attach`. */
export interface VmHandle {
  readonly pid: number;
  readonly instanceDir: string;
  readonly memoryFile: string;
  readonly diskFile: string;
  readonly consoleLog: string;
  pause(): Promise<void>;
  resume(): Promise<void>;
  /** Pauses the guest if needed and writes its device state (and private RAM) to `file`. Leaves it paused. */
  captureDeviceState(file: string): Promise<CaptureResult>;
  /**
   * Captures a running guest in one short pause: device state (with `whilePaused` alongside), then the disk fixed as
   * the content of a copy QEMU makes after the guest runs again (blockdev-backup: the guest's later writes first
   * copy the old data out). Leaves the guest running.
   */
  captureRunning(options: RunningCaptureOptions): Promise<RunningCapture>;
  status(): Promise<VmStatus>;
  /** Quits QEMU (SIGKILL after the timeout), waits for it to exit and removes its socket and pidfile. */
  stop(options?: StopOptions): Promise<void>;
}

/** Hypeman's runtime feature ids a driver can offer (GET /capabilities reports them per runtime). */
export const RUNTIME_FEATURES = ["snapshots", "standby", "fork", "pause"] as const;
export type RuntimeFeature = (typeof RUNTIME_FEATURES)[number];

export interface HypervisorDriver {
  readonly name: HypervisorName;
  /** What this driver can do with a guest; the API reports it and gates nothing on guesses. */
  readonly features: readonly RuntimeFeature[];
  isAvailable(): Promise<boolean>;
  boot(spec: VmSpec): Promise<VmHandle>;
  /** The QEMU this host runs and the machine types it can load (QEMU drivers only). */
  hostQemu?(): Promise<HostQemu>;
  /** Re-attaches to the VM of an instance dir after a worker restart; null if its process is gone. */
  attach(instanceDir: string): Promise<VmHandle | null>;
}
