/** Which hypervisors this host can run, and the driver for a requested one. */
import { UnsupportedHypervisorError } from "./errors.ts";
import { createQemuDriver, type QemuDriverOptions } from "./qemu/driver.ts";
import type { HypervisorDriver, HypervisorName, RuntimeFeature } from "./types.ts";

export interface RegistryOptions {
  qemu?: QemuDriverOptions;
}

/** Only drivers implemented here; other HYPERVISOR_NAMES are known but never available. */
function implementedDrivers(options: RegistryOptions): HypervisorDriver[] {
  return [createQemuDriver(options.qemu)];
}

/** The drivers this build implements and what each can do, whether or not this host could run them. */
export function implementedRuntimes(): Array<{ name: HypervisorName; features: readonly RuntimeFeature[] }> {
  return implementedDrivers({}).map((driver) => ({ name: driver.name, features: driver.features }));
}

/** Names of the hypervisors this host can run right now (`qemu` when qemu-system-x86_64 is on PATH). */
export async function availableHypervisors(options: RegistryOptions = {}): Promise<HypervisorName[]> {
  const drivers = implementedDrivers(options);
  const available = await Promise.all(drivers.map((driver) => driver.isAvailable()));
  return drivers.filter((_, index) => available[index]).map((driver) => driver.name);
}

/** The driver for `name`; throws UnsupportedHypervisorError (listing the available ones) otherwise. */
export async function getHypervisor(name: string, options: RegistryOptions = {}): Promise<HypervisorDriver> {
  const driver = implementedDrivers(options).find((candidate) => candidate.name === name);
  if (driver && (await driver.isAvailable())) return driver;
  throw new UnsupportedHypervisorError(name, await availableHypervisors(options));
}
