// Durable file writes: temp file, fsync, rename, fsync of the directory.
import { open, rename } from "node:fs/promises";
import path from "node:path";

/** Flushes a file, or a directory's entries (after a rename into it), to the disk. */
export async function fsyncPath(target: string): Promise<void> {
  const handle = await open(target, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces `file` with `content` so a crash leaves either the old or the new version, never a torn one. */
export async function writeFileAtomic(file: string, content: string | Buffer): Promise<void> {
  const temporary = `${file}.tmp-${process.pid}-${Date.now()}`;
  const handle = await open(temporary, "w", 0o644);
  try {
    await handle.writeFile(content);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temporary, file);
  await fsyncPath(path.dirname(file));
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
