// A secret generated once into a file of the data dir (mode 0600), read back by every process sharing that dir.
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { createFileOnceSync } from "./files.ts";

/** The file's trimmed contents; created durably with `generate()` by whichever process comes first. */
export function readOrCreateSecretFile(file: string, generate: () => string): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  mkdirSync(path.dirname(file), { recursive: true });
  // Linked into place only when whole and flushed; a process that lost the race reads the winner's secret.
  createFileOnceSync(file, `${generate()}\n`, 0o600);
  return readFileSync(file, "utf8").trim();
}
