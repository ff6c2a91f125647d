// Durable file writes, the one way this service puts a record or payload in place: write a temporary file in the
// destination's directory, fsync it, rename (or link, to create once) it into place, fsync the directory. A crash
// at any point leaves the old file or the new one whole, never a torn or empty one. Temporary and staging names come
// from shared/temp-names.ts, so the orphan sweep knows every one.
import { closeSync, fsyncSync, linkSync, openSync, rmSync, writeFileSync } from "node:fs";
import { type FileHandle, open, readdir, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { temporaryPath } from "./temp-names.ts";

/** Flushes a file, or a directory's entries (after a rename into it), to the disk. */
export async function fsyncPath(target: string): Promise<void> {
  const handle = await open(target, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** A file being written beside its destination, put in place durably by `commit`. */
export interface DurableFile {
  handle: FileHandle;
  path: string;
  /** fsync, close, rename into place, fsync the directory. */
  commit(): Promise<void>;
  /** Closes and removes the temporary file; never throws. */
  discard(): Promise<void>;
}

export async function createDurableFile(destination: string, mode = 0o644): Promise<DurableFile> {
  const temporary = temporaryPath(destination);
  const handle = await open(temporary, "wx+", mode); // readable too: writers may check what they wrote
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await handle.close();
  };
  return {
    handle,
    path: temporary,
    async commit() {
      await handle.sync();
      await close();
      await rename(temporary, destination);
      await fsyncPath(path.dirname(destination));
    },
    async discard() {
      await close().catch(() => {});
      await unlink(temporary).catch(() => {});
    },
  };
}

/** Replaces `file` with `content` durably: a crash leaves either the old or the new version, never a torn one. */
export async function writeFileDurable(file: string, content: string | Buffer, mode = 0o644): Promise<void> {
  const output = await createDurableFile(file, mode);
  try {
    await output.handle.writeFile(content);
    await output.commit();
  } catch (error) {
    await output.discard();
    throw error;
  }
}

/**
 * Puts a file another program wrote at `temporary` (e.g. `cp`) in place as `destination`, with the same guarantee:
 * fsync it, rename it, fsync the directory.
 */
export async function commitWrittenFile(temporary: string, destination: string): Promise<void> {
  await fsyncPath(temporary);
  await rename(temporary, destination);
  await fsyncPath(path.dirname(destination));
}

/**
 * Moves a filled staging directory in place as `destination`: every file in it and the directory itself are
 * flushed first, so a record written after this names payloads that are on the disk.
 */
export async function commitStagedDirectory(staging: string, destination: string): Promise<void> {
  for (const entry of await readdir(staging, { withFileTypes: true })) {
    if (entry.isFile()) await fsyncPath(path.join(staging, entry.name));
  }
  await fsyncPath(staging);
  await rename(staging, destination);
  await fsyncPath(path.dirname(destination));
}

/**
 * Moves every file of a filled staging directory into the existing directory `destination` (replacing files of the
 * same name), each flushed first, then the destination's entries: a record written after this names payloads that
 * are on the disk. The staging directory is left empty.
 */
export async function commitStagedFiles(staging: string, destination: string): Promise<string[]> {
  const moved: string[] = [];
  for (const entry of await readdir(staging, { withFileTypes: true })) {
    if (!entry.isFile()) continue;
    await fsyncPath(path.join(staging, entry.name));
    await rename(path.join(staging, entry.name), path.join(destination, entry.name));
    moved.push(entry.name);
  }
  await fsyncPath(destination);
  return moved;
}

/**
 * Creates `file` with `content` unless it exists, durably (write aside, fsync, link into place, fsync the directory):
 * it never exists empty or half written. Returns false when another process (or an earlier start) created it first.
 * Synchronous: for files read once at boot (host id, API key, secrets).
 */
export function createFileOnceSync(file: string, content: string, mode = 0o644): boolean {
  const temporary = temporaryPath(file);
  const fd = openSync(temporary, "wx", mode);
  try {
    writeFileSync(fd, content);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(temporary, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return false;
    throw error;
  } finally {
    rmSync(temporary, { force: true });
  }
  const directory = openSync(path.dirname(file), "r");
  try {
    fsyncSync(directory);
  } finally {
    closeSync(directory);
  }
  return true;
}

/** The last `maxBytes` of a file (all of it when smaller); `whole` when it starts at the file's beginning. */
async function readTail(file: string, maxBytes: number): Promise<{ bytes: Buffer; whole: boolean }> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { bytes: Buffer.alloc(0), whole: true };
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, maxBytes);
    const bytes = Buffer.alloc(length);
    const { bytesRead } = await handle.read(bytes, 0, length, size - length);
    return { bytes: bytes.subarray(0, bytesRead), whole: length === size };
  } finally {
    await handle.close();
  }
}

/**
 * The last `count` lines of a text file, or of files that continue one another (oldest first, e.g. a rotated
 * log and its current file), reading at most `maxBytes` from their end.
 */
export async function tailLines(
  files: string | readonly string[],
  count: number,
  maxBytes = 1024 * 1024,
): Promise<string[]> {
  const chunks: Buffer[] = [];
  let budget = maxBytes;
  let cut = false;
  for (const file of [files].flat().reverse()) {
    const { bytes, whole } = await readTail(file, budget);
    chunks.unshift(bytes);
    budget -= bytes.length;
    cut = !whole;
    const newlines = chunks.reduce((total, chunk) => total + chunk.filter((byte) => byte === 10).length, 0);
    if (cut || budget <= 0 || newlines > count) break;
  }
  const lines = Buffer.concat(chunks).toString("utf8").replace(/\r/g, "").split("\n");
  if (lines.at(-1) === "") lines.pop();
  if (cut) lines.shift(); // the first line may be cut
  return lines.slice(-count);
}

/**
 * A directory's entries, or none when it does not exist. Any other failure (EIO, EMFILE, ENOTDIR…) is thrown: a
 * listing that could not be read is not an empty one, and a host that announced it as such would have its
 * resources removed from the read model.
 */
export async function listDirectory(directory: string): Promise<string[]> {
  try {
    return await readdir(directory);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
}

/**
 * For a listing of records: a record that does not parse is skipped (the start-up sweep quarantines it), a read that
 * failed (a system error: EIO, EMFILE, EISDIR…) is thrown, for the same reason as in listDirectory.
 */
export function skipUnparsable(error: unknown): undefined {
  if (typeof (error as NodeJS.ErrnoException | undefined)?.syscall === "string") throw error;
  return undefined;
}
