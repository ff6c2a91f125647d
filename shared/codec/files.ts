// Writing an output file safely, through the one durable-write helper (shared/files.ts), with codec error messages.
import type { FileHandle } from "node:fs/promises";
import { createDurableFile } from "../files.ts";
import { ioStep } from "./errors.ts";

export interface TemporaryFile {
  handle: FileHandle;
  path: string;
  /** Flushes, closes and renames the file into place, then flushes its directory. */
  commit(): Promise<void>;
  /** Closes and removes the file; never throws. */
  discard(): Promise<void>;
}

export async function createTemporaryFile(destinationPath: string, what: string): Promise<TemporaryFile> {
  const file = await ioStep(`create temporary ${what} file`, () => createDurableFile(destinationPath));
  return {
    handle: file.handle,
    path: file.path,
    commit: () => ioStep(`put ${what} file in place`, () => file.commit()),
    discard: () => file.discard(),
  };
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
