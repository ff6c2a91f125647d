// A host's free memory, checked before a fork or restore brings a guest's RAM up (the reference's 409).
import { readFile } from "node:fs/promises";
import { ApiError } from "../../shared/errors.ts";

const MEMINFO_PATH = "/proc/meminfo";

/** MemAvailable of a /proc/meminfo text, in bytes; undefined when the line is missing (kernels before 3.14). */
export function parseMemAvailable(meminfo: string): number | undefined {
  const match = /^MemAvailable:\s+(\d+) kB$/m.exec(meminfo);
  return match ? Number(match[1]) * 1024 : undefined;
}

/** Throws 409 insufficient_resources when the host has less memory available than the guest's RAM. */
export async function assertFreeMemory(guestBytes: number, hostId: string, meminfoPath = MEMINFO_PATH): Promise<void> {
  const available = parseMemAvailable(await readFile(meminfoPath, "utf8"));
  if (available === undefined || available >= guestBytes) return;
  const mib = (bytes: number) => `${Math.floor(bytes / 1024 ** 2)} MiB`;
  throw new ApiError(
    "insufficient_resources",
    `host ${hostId} has ${mib(available)} of memory available; the guest needs ${mib(guestBytes)}`,
  );
}
