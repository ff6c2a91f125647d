// Where an instance's files live on its host: shared by the capture worker (which owns them) and the compression
// worker (which compresses a Standby instance's memory in place).
import { readFile } from "node:fs/promises";
import path from "node:path";
import { writeFileDurable } from "../files.ts";
import { instanceLayout } from "../hypervisor/qemu/args.ts";

export interface InstanceFiles {
  dir: string;
  record: string;
  disk: string;
  memory: string;
  standbyState: string;
  consoleLog: string;
  memoryMode: string;
  /** The compression the last standby asked for (shared/instances/standby-memory.ts); absent when none. */
  standbyCompression: string;
}

export function instanceFiles(dataDir: string, id: string): InstanceFiles {
  const dir = path.join(dataDir, "instances", id);
  const layout = instanceLayout(dir);
  return {
    dir,
    record: path.join(dir, "instance.json"),
    disk: layout.defaultDiskFile,
    memory: layout.defaultMemoryFile,
    standbyState: path.join(dir, "standby-device-state"),
    consoleLog: layout.consoleLog,
    memoryMode: path.join(dir, "memory-mode"),
    standbyCompression: path.join(dir, "standby-compression.json"),
  };
}

/**
 * `shared`: the VM's RAM is its own memory.raw, mapped shared, so captures leave RAM out of the device state.
 * `private`: the VM maps a file it does not own (a snapshot's RAM) copy-on-write, so captures carry its RAM.
 */
export type MemoryMode = "shared" | "private";

const MEMORY_MODES: readonly string[] = ["shared", "private"] satisfies MemoryMode[];

/**
 * The memory mode the instance's VM was last booted with (`shared` when none was ever written, as before the file
 * existed). An empty or garbled file is an error: guessing `shared` would restore a private VM's RAM from the wrong
 * file.
 */
export async function readMemoryMode(files: InstanceFiles): Promise<MemoryMode> {
  let text: string;
  try {
    text = await readFile(files.memoryMode, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "shared";
    throw error;
  }
  const mode = text.trim();
  if (!MEMORY_MODES.includes(mode))
    throw new Error(`${files.memoryMode} holds ${JSON.stringify(mode)}, not a memory mode`);
  return mode as MemoryMode;
}

/** Records the memory mode a VM is booted with, durably: a crash leaves the old mode or the new one. */
export async function writeMemoryMode(files: InstanceFiles, mode: MemoryMode): Promise<void> {
  await writeFileDurable(files.memoryMode, mode);
}
