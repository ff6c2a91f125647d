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

/** The last `count` lines of a text file, reading at most `maxBytes` from its end. */
export async function tailLines(file: string, count: number, maxBytes = 1024 * 1024): Promise<string[]> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(file, "r");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  try {
    const { size } = await handle.stat();
    const length = Math.min(size, maxBytes);
    const buffer = Buffer.alloc(length);
    await handle.read(buffer, 0, length, size - length);
    const lines = buffer.toString("utf8").replace(/\r/g, "").split("\n");
    if (lines.at(-1) === "") lines.pop();
    if (length < size) lines.shift(); // the first line may be cut
    return lines.slice(-count);
  } finally {
    await handle.close();
  }
}
