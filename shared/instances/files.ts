// Where an instance's files live on its host: shared by the capture worker (which owns them) and the compression
// worker (which compresses a Standby instance's memory in place).
import path from "node:path";
import { instanceLayout } from "../hypervisor/qemu/args.ts";

export interface InstanceFiles {
  dir: string;
  record: string;
  disk: string;
  memory: string;
  standbyState: string;
  consoleLog: string;
  memoryMode: string;
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
  };
}
