// Writing an output file safely: a temporary file beside the destination, fsync, rename, fsync of the directory.
import { randomBytes } from "node:crypto";
import { type FileHandle, open, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { ioStep } from "./errors.ts";

export interface TemporaryFile {
  handle: FileHandle;
  path: string;
  /** Flushes (unless `durable` is false), closes and renames the file into place. */
  commit(durable?: boolean): Promise<void>;
  /** Closes and removes the file; never throws. */
  discard(): Promise<void>;
}

export async function createTemporaryFile(destinationPath: string, what: string): Promise<TemporaryFile> {
  const temporaryPath = path.join(
    path.dirname(destinationPath),
    `.${path.basename(destinationPath)}.${randomBytes(6).toString("hex")}.tmp`,
  );
  const handle = await ioStep(`create temporary ${what} file`, () => open(temporaryPath, "wx", 0o644));
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await handle.close();
  };
  return {
    handle,
    path: temporaryPath,
    async commit(durable = true) {
      if (durable) await ioStep(`flush ${what} file`, () => handle.sync());
      await ioStep(`close ${what} file`, close);
      await ioStep(`rename ${what} file into place`, () => rename(temporaryPath, destinationPath));
      if (durable) await ioStep(`flush ${what} file's directory`, () => syncDirectory(path.dirname(destinationPath)));
    },
    async discard() {
      await close().catch(() => {});
      await unlink(temporaryPath).catch(() => {});
    },
  };
}

async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Reads exactly `length` bytes at `position`, failing on a short read (the file shrank or is truncated). */
export async function readExactly(
  handle: FileHandle,
  buffer: Buffer,
  bufferOffset: number,
  length: number,
  position: number,
): Promise<void> {
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buffer, bufferOffset + done, length - done, position + done);
    if (bytesRead === 0) throw new Error(`unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

/** Writes all of `buffer` at `position`. */
export async function writeFully(handle: FileHandle, buffer: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesWritten } = await handle.write(buffer, done, buffer.length - done, position + done);
    done += bytesWritten;
  }
}
