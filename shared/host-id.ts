// A host's stable id: HOST_ID from config, else one generated once and kept in the data dir.
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import path from "node:path";

/** What a HOST_ID may look like (it names queues and appears in URLs). */
export const HOST_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,62}$/;

export function resolveHostId(configured: string | undefined, dataDir: string): string {
  if (configured) return configured;
  const file = path.join(dataDir, "host-id");
  try {
    const stored = readFileSync(file, "utf8").trim();
    if (stored) return stored;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
  }
  const base = hostname()
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 40);
  const id = `${base || "host"}-${randomBytes(4).toString("hex")}`;
  mkdirSync(dataDir, { recursive: true });
  try {
    writeFileSync(file, `${id}\n`, { flag: "wx" });
    return id;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") return resolveHostId(configured, dataDir);
    throw error;
  }
}
