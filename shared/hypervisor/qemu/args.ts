/** The QEMU command line and instance-dir layout for one VM; pure functions, no I/O. */
import path from "node:path";
import type { GuestImage } from "../image.ts";
import type { MemoryLoad } from "../types.ts";

/** Files a running VM keeps in its instance dir besides disk, memory and console log. */
/**
 * The machine type every VM runs, pinned: a device-state stream only loads into the machine type it was captured on,
 * and `-machine pc` is an alias that moves with each QEMU release. This is what `pc` meant on QEMU 10.0.2 (Debian
 * bookworm-backports); later QEMUs keep it. Changing it strands every snapshot taken before.
 */
export const MACHINE_TYPE = "pc-i440fx-10.0";

export interface InstanceLayout {
  qmpSocket: string;
  pidFile: string;
  /** Paths of the VM's disk and memory, for `attach` after a worker restart. */
  runtimeFile: string;
  consoleLog: string;
  defaultDiskFile: string;
  defaultMemoryFile: string;
}

export function instanceLayout(instanceDir: string): InstanceLayout {
  const dir = path.resolve(instanceDir);
  return {
    qmpSocket: path.join(dir, "qmp.sock"),
    pidFile: path.join(dir, "qemu.pid"),
    runtimeFile: path.join(dir, "qemu.json"),
    consoleLog: path.join(dir, "console.log"),
    defaultDiskFile: path.join(dir, "disk.raw"),
    defaultMemoryFile: path.join(dir, "memory.raw"),
  };
}

export interface QemuLaunch {
  layout: InstanceLayout;
  image: GuestImage;
  memoryBytes: number;
  vcpus: number;
  accel: "kvm" | "tcg";
  memoryFile: string;
  shareMemory: boolean;
  /** The memory file is read-only (a squashfs mount): open it so, with RAM still writable copy-on-write. */
  memoryReadOnly: boolean;
  diskFile: string;
  incoming: boolean;
  memoryLoad?: MemoryLoad;
}

/** QEMU option values escape a comma by doubling it. */
function optionValue(value: string): string {
  return value.replaceAll(",", ",,");
}

export function qemuArgs(launch: QemuLaunch): string[] {
  const { layout, image } = launch;
  const args = [
    ["-name", "snapfleet"],
    ["-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"],
    ["-accel", launch.accel === "tcg" ? "tcg,thread=multi" : "kvm"],
    ["-machine", `${MACHINE_TYPE},memory-backend=mem`],
    ["-m", `${Math.floor(launch.memoryBytes / (1024 * 1024))}M`],
    ["-smp", String(launch.vcpus)],
    [
      "-object",
      `memory-backend-file,id=mem,size=${launch.memoryBytes},mem-path=${optionValue(launch.memoryFile)},share=${launch.shareMemory ? "on" : "off"}${launch.memoryReadOnly ? ",readonly=on,rom=off" : ""}`,
    ],
    // The kernel is given on restores too: its option ROMs are part of the machine the stream describes.
    ["-kernel", image.kernelPath, "-initrd", image.initrdPath, "-append", kernelCommandLine(launch)],
    // drop-cache=off: activating the disk (after a capture's device-state migration, or a restore's) would otherwise
    // fsync the file and drop its whole page cache, a pause that grows with the data on the disk (docs/lazy-fork.md).
    ["-drive", `file=${optionValue(launch.diskFile)},format=raw,if=virtio,cache=writeback,file.drop-cache=off`],
    ["-chardev", `file,id=console,path=${optionValue(layout.consoleLog)},append=on`, "-serial", "chardev:console"],
    ["-qmp", `unix:${optionValue(layout.qmpSocket)},server=on,wait=off`],
    ["-pidfile", layout.pidFile, "-daemonize"],
    launch.incoming ? ["-incoming", "defer", "-S"] : [],
  ];
  return args.flat();
}

/** The image's command line, plus the memory load the guest's init reads from it. */
function kernelCommandLine(launch: QemuLaunch): string {
  const load = launch.memoryLoad;
  if (!load || load.fillPercent <= 0) return launch.image.manifest.cmdline;
  return `${launch.image.manifest.cmdline} snapfleet.fill=${load.fillPercent} snapfleet.dirty=${load.dirtyMiBPerSecond}`;
}

/** Quotes a path for the shell QEMU runs `exec:` migration commands in. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}
