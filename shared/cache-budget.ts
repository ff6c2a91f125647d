// A directory of cache entries (one subdirectory or file each) kept within a byte budget: least recently used first
// out, never an entry a process has open or mapped (a fork's QEMU maps its RAM from it), never one used moments ago.
import { readdir, readlink, rm, stat, utimes } from "node:fs/promises";
import path from "node:path";
import { processMaps } from "./process-maps.ts";

/** An entry used this recently may be about to be mapped: it stays whatever the budget says. */
export const CACHE_GRACE_MS = 60_000;

/** Marks an entry used now (its mtime is its last use). */
export async function touchCacheEntry(entry: string): Promise<void> {
  const now = new Date();
  await utimes(entry, now, now).catch(() => {});
}

interface Entry {
  path: string;
  lastUsedMs: number;
  bytes: number;
}

/** Bytes allocated on disk under `target` (sparse holes do not count). */
export async function allocatedBytesUnder(target: string): Promise<number> {
  const info = await stat(target).catch(() => undefined);
  if (!info) return 0;
  if (!info.isDirectory()) return info.blocks * 512;
  let total = 0;
  for (const name of await readdir(target).catch(() => [] as string[])) {
    total += await allocatedBytesUnder(path.join(target, name));
  }
  return total;
}

async function entriesOf(root: string): Promise<Entry[]> {
  const entries: Entry[] = [];
  for (const name of await readdir(root).catch(() => [] as string[])) {
    const entry = path.join(root, name);
    const info = await stat(entry).catch(() => undefined);
    if (info) entries.push({ path: entry, lastUsedMs: info.mtimeMs, bytes: await allocatedBytesUnder(entry) });
  }
  return entries;
}

/** Files under `root` that some process on this machine has mapped (/proc/<pid>/maps) or open (/proc/<pid>/fd). */
export async function filesInUseUnder(root: string): Promise<Set<string>> {
  const prefix = `${path.resolve(root)}/`;
  const inUse = new Set<string>();
  for await (const { pid, maps } of processMaps()) {
    for (const line of maps.split("\n")) {
      const at = line.indexOf(prefix);
      if (at >= 0) inUse.add(line.slice(at).replace(/ \(deleted\)$/, ""));
    }
    for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
      if (target.startsWith(prefix)) inUse.add(target);
    }
  }
  return inUse;
}

export interface EvictionReport {
  totalBytes: number;
  evicted: string[];
  /** Bytes still held above the budget by entries in use or used within the grace period. */
  overBudgetBytes: number;
}

/** Evicts least recently used entries of `root` until it holds at most `budgetBytes`. */
export async function enforceCacheBudget(
  root: string,
  budgetBytes: number,
  options: { graceMs?: number; now?: number } = {},
): Promise<EvictionReport> {
  const entries = await entriesOf(root);
  let totalBytes = entries.reduce((sum, entry) => sum + entry.bytes, 0);
  const evicted: string[] = [];
  if (totalBytes <= budgetBytes) return { totalBytes, evicted, overBudgetBytes: 0 };
  const now = options.now ?? Date.now();
  const graceMs = options.graceMs ?? CACHE_GRACE_MS;
  const inUse = [...(await filesInUseUnder(root))];
  const busy = (entry: Entry) => inUse.some((file) => file === entry.path || file.startsWith(`${entry.path}/`));
  for (const entry of entries.sort((a, b) => a.lastUsedMs - b.lastUsedMs)) {
    if (totalBytes <= budgetBytes) break;
    if (now - entry.lastUsedMs < graceMs || busy(entry)) continue;
    await rm(entry.path, { recursive: true, force: true });
    totalBytes -= entry.bytes;
    evicted.push(entry.path);
  }
  return { totalBytes, evicted, overBudgetBytes: Math.max(0, totalBytes - budgetBytes) };
}
