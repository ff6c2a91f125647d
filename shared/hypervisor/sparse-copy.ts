/** Copies a file keeping its holes: guest memory and disk files are mostly zeros. */
import { randomBytes } from "node:crypto";
import { rename, rm, stat } from "node:fs/promises";
import { run } from "./exec.ts";

export interface SparseCopyResult {
  /** Apparent size in bytes. */
  size: number;
  /** Bytes actually allocated on disk for the copy. */
  allocatedBytes: number;
}

/**
 * Copies `source` to `destination` atomically (temp file + rename). GNU cp 9 walks the source with
 * SEEK_DATA/SEEK_HOLE and `--sparse=always` also punches holes for zero blocks inside data regions;
 * on XFS or btrfs `--reflink=auto` shares the extents instead, which costs nothing.
 */
export async function copyFileSparse(source: string, destination: string): Promise<SparseCopyResult> {
  const temp = `${destination}.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await run("cp", ["--reflink=auto", "--sparse=always", "--", source, temp]);
    await rename(temp, destination);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  const { size, blocks } = await stat(destination);
  return { size, allocatedBytes: blocks * 512 };
}
