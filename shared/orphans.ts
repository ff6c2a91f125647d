// Leftovers of work a crash interrupted on this host: capture staging directories and temporary files that no
// process will finish. Removed at worker start once untouched for a while, so another live process's are kept.
import { readdir, rm, stat } from "node:fs/promises";
import path from "node:path";
import type { Logger } from "./logger.ts";
import { isLeftoverName } from "./temp-names.ts";

/** A file being written, or a staging dir being filled, is touched far more often than this. */
export const ORPHAN_MIN_AGE_MS = 60_000;

async function entries(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => [] as string[]);
}

/** When anything in `target` last changed: itself, or for a directory also its direct entries. */
async function lastTouchedMs(target: string): Promise<number> {
  const own = await stat(target);
  if (!own.isDirectory()) return own.mtimeMs;
  let newest = own.mtimeMs;
  for (const name of await entries(target)) {
    const child = await stat(path.join(target, name)).catch(() => undefined);
    if (child) newest = Math.max(newest, child.mtimeMs);
  }
  return newest;
}

/**
 * Removes leftovers directly in each of `roots` and in their subdirectories (`snapshots/<id>/`, `cache/<id>/`…)
 * untouched for `minAgeMs`; returns what it removed.
 */
export async function removeLeftovers(
  roots: readonly string[],
  minAgeMs = ORPHAN_MIN_AGE_MS,
  now = Date.now(),
): Promise<string[]> {
  const candidates: string[] = [];
  for (const root of roots) {
    for (const name of await entries(root)) {
      const target = path.join(root, name);
      if (isLeftoverName(name)) candidates.push(target);
      else
        for (const inner of await entries(target)) if (isLeftoverName(inner)) candidates.push(path.join(target, inner));
    }
  }
  const removed: string[] = [];
  for (const candidate of candidates) {
    const touched = await lastTouchedMs(candidate).catch(() => undefined);
    if (touched === undefined || now - touched < minAgeMs) continue;
    await rm(candidate, { recursive: true, force: true });
    removed.push(candidate);
  }
  return removed;
}

/** What the capture and compression workers run at start over this host's payload directories. */
export async function removeHostLeftovers(dataDir: string, log: Logger): Promise<void> {
  const roots = ["snapshots", "instances", "tombstones", "cache"].map((name) => path.join(dataDir, name));
  const removed = await removeLeftovers(roots).catch((error: Error) => {
    log.warn({ err: error.message }, "could not clean leftovers of interrupted work");
    return [];
  });
  if (removed.length > 0) log.info({ removed }, "removed leftovers of interrupted work");
}
