// Which QEMU a device-state stream was written by: its version and the concrete machine type (the `pc` alias moves
// with the version). Kept beside every device-state file, so a snapshot can record it and a host can be checked
// against it before a fork or restore tries to load the stream.
import { readFile } from "node:fs/promises";
import { z } from "../zod.ts";

export const MACHINE_INFO = z.object({ qemu_version: z.string(), machine_type: z.string() });
export type MachineInfo = z.infer<typeof MACHINE_INFO>;

/** What a host's QEMU can load: its version and every machine type `-machine help` lists. */
export const HOST_QEMU = z.object({ version: z.string(), machines: z.array(z.string()) });
export type HostQemu = z.infer<typeof HOST_QEMU>;

export const machineInfoFile = (deviceStateFile: string) => `${deviceStateFile}.machine.json`;

/** The machine info written beside a device-state file, or null when there is none (streams from before). */
export async function readMachineInfo(deviceStateFile: string): Promise<MachineInfo | null> {
  try {
    return MACHINE_INFO.parse(JSON.parse(await readFile(machineInfoFile(deviceStateFile), "utf8")));
  } catch {
    return null;
  }
}

/** Why a host cannot load a stream written by `taken`, or null when it can. */
export function incompatibility(taken: MachineInfo, host: HostQemu): string | null {
  const major = (version: string) => version.split(".")[0];
  if (major(taken.qemu_version) !== major(host.version)) {
    return `it was taken on QEMU ${taken.qemu_version} and this host runs QEMU ${host.version} (another major version)`;
  }
  if (!host.machines.includes(taken.machine_type)) {
    return `its machine type ${taken.machine_type} is unknown to this host's QEMU ${host.version}`;
  }
  return null;
}

/** Parses `qemu-system-x86_64 --version` and `-machine help` output. */
export function parseHostQemu(versionText: string, machinesText: string): HostQemu {
  const version = /version (\d+\.\d+\.\d+)/.exec(versionText)?.[1] ?? "unknown";
  const machines = machinesText
    .split("\n")
    .slice(1)
    .map((line) => line.split(/\s+/)[0]!)
    .filter(Boolean);
  return { version, machines };
}
