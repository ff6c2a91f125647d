// A host's free disk space: checked before writing a payload whose size is known, and ENOSPC turned into a clear 507.
import { statfs } from "node:fs/promises";
import { ApiError } from "../errors.ts";
import { allocatedBytes } from "../snapshots/store.ts";

/** Room kept for what is not known up front: a VM's device state (~0.3 MiB for 256 MiB) and the record. */
export const WRITE_MARGIN_BYTES = 8 * 1024 ** 2;

/** Bytes an unprivileged writer may still use on the file system holding `dir`. */
export async function availableBytes(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return stats.bavail * stats.bsize;
}

/** Allocated bytes of the files (missing ones count 0): what a sparse copy of them writes. */
export async function allocatedBytesOf(files: readonly string[]): Promise<number> {
  let total = 0;
  for (const file of files) total += await allocatedBytes(file);
  return total;
}

export function insufficientStorage(hostId: string, detail: string, cause?: unknown): ApiError {
  return new ApiError("insufficient_storage", `host ${hostId}: no space left on device (${detail})`, { cause });
}

/** Throws 507 insufficient_storage when `dir` has less than `neededBytes` plus the margin free. */
export async function assertFreeSpace(dir: string, neededBytes: number, hostId: string): Promise<void> {
  const available = await availableBytes(dir);
  if (available < neededBytes + WRITE_MARGIN_BYTES) {
    const detail = `${dir} has ${formatMiB(available)} free, ${formatMiB(neededBytes + WRITE_MARGIN_BYTES)} needed`;
    throw insufficientStorage(hostId, detail);
  }
}

/** ENOSPC anywhere in the error's cause chain (a failed `cp` reports it only in its message). */
export function isNoSpaceError(error: unknown): boolean {
  for (let current = error; current instanceof Error; current = current.cause) {
    if ((current as NodeJS.ErrnoException).code === "ENOSPC" || /no space left on device/i.test(current.message)) {
      return true;
    }
  }
  return false;
}

/** The error as 507 insufficient_storage when it is ENOSPC, naming the host and what was being written. */
export function asInsufficientStorage(error: unknown, hostId: string, writing: string): unknown {
  if (error instanceof ApiError || !isNoSpaceError(error)) return error;
  return insufficientStorage(hostId, `while writing ${writing}`, error);
}

const formatMiB = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
