// Serial console logs grow as long as a guest prints. QEMU keeps the file open in append mode (O_APPEND, checked in
// /proc/<pid>/fdinfo), so it is rotated by copy-truncate: the file is copied to `<file>.1` and truncated in place,
// and QEMU's next write lands at the new end. What the guest prints between the copy and the truncate is lost.
import { copyFile, stat, truncate } from "node:fs/promises";
import { tailLines } from "../files.ts";

export const previousConsoleLog = (file: string) => `${file}.1`;

/** Rotates `file` once it holds more than `maxBytes`; at most one previous file is kept. Returns whether it did. */
export async function rotateConsoleLog(file: string, maxBytes: number): Promise<boolean> {
  const size = await stat(file).then(
    (info) => info.size,
    () => 0,
  );
  if (size <= maxBytes) return false;
  await copyFile(file, previousConsoleLog(file));
  await truncate(file, 0);
  return true;
}

/** The last `count` lines the guest printed, across the rotation. */
export function tailConsoleLog(file: string, count: number): Promise<string[]> {
  return tailLines([previousConsoleLog(file), file], count);
}
