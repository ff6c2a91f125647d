// API keys: from config, or generated once into the data dir when none is configured (created durably: a crash
// never leaves the file empty; one found empty stops the API with a clear error rather than minting another key).
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { createFileOnceSync } from "../shared/files.ts";

export const GENERATED_KEY_FILE = "api-key";

/** Returns the configured keys, or the key stored in (or newly written to) `<dataDir>/api-key`. */
export function resolveApiKeys(configured: string[], dataDir: string): { keys: string[]; generatedFile?: string } {
  if (configured.length > 0) return { keys: configured };
  const file = path.join(dataDir, GENERATED_KEY_FILE);
  const stored = readStoredKey(file);
  if (stored) return { keys: [stored], generatedFile: file };
  mkdirSync(dataDir, { recursive: true });
  const key = `sf_${randomBytes(24).toString("base64url")}`;
  // Another process wrote it first: use theirs.
  if (!createFileOnceSync(file, `${key}\n`, 0o600))
    return { keys: [readStoredKey(file) as string], generatedFile: file };
  return { keys: [key], generatedFile: file };
}

function readStoredKey(file: string): string | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  const stored = text.trim();
  if (!stored) throw new Error(`${file} is empty: write the key back, set API_KEYS, or remove the file for a new key`);
  return stored;
}
