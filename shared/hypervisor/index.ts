/** The hypervisor layer: driver seam, qemu driver, registry, guest images and sparse copies. */
export * from "./errors.ts";
export * from "./image.ts";
export { createQemuDriver, type QemuDriverOptions, resolveAccel } from "./qemu/driver.ts";
export { availableHypervisors, getHypervisor, type RegistryOptions } from "./registry.ts";
export { copyFileSparse, type SparseCopyResult } from "./sparse-copy.ts";
export * from "./types.ts";
