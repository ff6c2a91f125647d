// API keys: from config, or generated once into the data dir when none is configured.
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

export const GENERATED_KEY_FILE = "api-key";

/** Returns the configured keys, or the key stored in (or newly written to) `<dataDir>/api-key`. */
export function resolveApiKeys(configured: string[], dataDir: string): { keys: string[]; generatedFile?: string } {
  if (configured.length > 0) return { keys: configured };
  const file = path.join(dataDir, GENERATED_KEY_FILE);
  try {
    const stored = readFileSync(file, "utf8").trim();
    if (stored) return { keys: [stored], generatedFile: file };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  mkdirSync(dataDir, { recursive: true });
  const key = `sf_${randomBytes(24).toString("base64url")}`;
  try {
    writeFileSync(file, `${key}\n`, { mode: 0o600, flag: "wx" });
    return { keys: [key], generatedFile: file };
  } catch (error) {
    // Another process wrote it first: use theirs.
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return resolveApiKeys(configured, dataDir);
    throw error;
  }
}
