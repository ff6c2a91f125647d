/** Copies a file keeping its holes: guest memory and disk files are mostly zeros. */
import { rm, stat, statfs } from "node:fs/promises";
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
    await copyExtents(source, temp);
    await commitWrittenFile(temp, destination);
  } catch (error) {
    await rm(temp, { force: true });
    throw error;
  }
  return allocationOf(destination);
}

/**
 * The same copy into a staging directory, not flushed: `commitStagedDirectory` (shared/files.ts) flushes every file
 * of it before it goes in place, so the copy's write-back is not paid where it is made (inside a capture's pause).
 * A crash leaves a staging directory, which the orphan sweep removes.
 */
export async function copySparseIntoStaging(source: string, stagedFile: string): Promise<SparseCopyResult> {
  try {
    await copyExtents(source, stagedFile);
  } catch (error) {
    await rm(stagedFile, { force: true });
    throw error;
  }
  return allocationOf(stagedFile);
}

/** XFS and btrfs: a copy there shares extents (reflink) instead of writing the data again. */
const EXTENT_SHARING_FILE_SYSTEMS = new Set([0x58465342 /* XFS */, 0x9123683e /* btrfs */]);

export async function sharesExtents(file: string): Promise<boolean> {
  return EXTENT_SHARING_FILE_SYSTEMS.has((await statfs(file)).type);
}

async function copyExtents(source: string, destination: string): Promise<void> {
  await run("cp", ["--reflink=auto", "--sparse=always", "--", source, destination]);
}

async function allocationOf(file: string): Promise<SparseCopyResult> {
  const { size, blocks } = await stat(file);
  return { size, allocatedBytes: blocks * 512 };
}
