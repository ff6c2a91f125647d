/** Copies a file keeping its holes: guest memory and disk files are mostly zeros. */
import { rm, stat } from "node:fs/promises";
import { commitWrittenFile } from "../files.ts";
import { temporaryPath } from "../temp-names.ts";
import { run } from "./exec.ts";

export interface SparseCopyResult {
  /** Apparent size in bytes. */
  size: number;
  /** Bytes actually allocated on disk for the copy. */
  allocatedBytes: number;
}

/**
 * Copies `source` to `destination` durably (temp file, fsync, rename, fsync of the directory: shared/files.ts), so a
 * record written after it names a copy that is on the disk. GNU cp 9 walks the source with
 * SEEK_DATA/SEEK_HOLE and `--sparse=always` also punches holes for zero blocks inside data regions;
 * on XFS or btrfs `--reflink=auto` shares the extents instead, which costs nothing.
 */
export async function copyFileSparse(source: string, destination: string): Promise<SparseCopyResult> {
  const temp = temporaryPath(destination);
  try {
    await run("cp", ["--reflink=auto", "--sparse=always", "--", source, temp]);
    await commitWrittenFile(temp, destination);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  const { size, blocks } = await stat(destination);
  return { size, allocatedBytes: blocks * 512 };
}
