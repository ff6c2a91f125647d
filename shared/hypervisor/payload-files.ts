// The files a VM is given (RAM, disk, device state, kernel, initrd) are checked where QEMU will open them: none is a
// link, each is a regular file (of the RAM's size for the RAM), and each resolves inside the directory it belongs to.
import { constants } from "node:fs";
import { open, realpath } from "node:fs/promises";
import { ApiError } from "../errors.ts";
import { isInside } from "./image.ts";

export interface PayloadFile {
  file: string;
  /** The directory the file must resolve inside (the data dir, or the images dir for kernel and initrd). */
  root: string;
  /** What the file is, for the message. */
  what: string;
  /** Its exact size in bytes, when known. */
  size?: number;
}

/** Throws invalid_state (nothing is started) for a file that is a link, not a regular file, mis-sized or outside. */
export async function assertPayloadFile({ file, root, what, size }: PayloadFile): Promise<void> {
  const refuse = (problem: string, cause?: unknown): never => {
    throw new ApiError("invalid_state", `${what} ${file} ${problem}; no guest was started`, { cause });
  };
  const handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(
    (error: NodeJS.ErrnoException) => refuse(error.code === "ELOOP" ? "is a symbolic link" : "cannot be opened", error),
  );
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) refuse("is not a regular file");
    if (size !== undefined && stats.size !== size) refuse(`holds ${stats.size} bytes, not ${size}`);
  } finally {
    await handle.close();
  }
  const [resolvedRoot, resolved] = await Promise.all([realpath(root), realpath(file)]);
  if (!isInside(resolvedRoot, resolved)) refuse(`resolves outside ${root}`);
}
