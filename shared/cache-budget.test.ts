import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir, waitFor } from "../test/helpers/fixtures.ts";
import { enforceCacheBudget, filesInUseUnder, touchCacheEntry } from "./cache-budget.ts";

const data = tempDir("cache");
const holders: ChildProcess[] = [];
afterAll(() => {
  for (const holder of holders) holder.kill("SIGKILL");
  data.remove();
});

const KIB = 1024;
/** An entry directory with one 64 KiB file, last used `minutesAgo`. */
function entry(root: string, name: string, minutesAgo: number): string {
  const dir = path.join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "memory.raw"), Buffer.alloc(64 * KIB, 1));
  const when = new Date(Date.now() - minutesAgo * 60_000);
  utimesSync(dir, when, when);
  return dir;
}

describe("enforceCacheBudget", () => {
  it("does nothing within the budget", async () => {
    const root = path.join(data.dir, "within");
    entry(root, "a", 10);
    const report = await enforceCacheBudget(root, 1024 * KIB);
    expect(report.evicted).toEqual([]);
    expect(report.totalBytes).toBeGreaterThanOrEqual(64 * KIB);
  });

  it("evicts least recently used first, skipping entries used just now and entries a process holds open", async () => {
    const root = path.join(data.dir, "over");
    const oldest = entry(root, "oldest", 50);
    const held = entry(root, "held", 40);
    const older = entry(root, "older", 30);
    const recent = entry(root, "recent", 20);
    const fresh = entry(root, "fresh", 20);
    await touchCacheEntry(fresh); // a fork is about to map it
    // A process holding a file of `held` open, as a fork's QEMU holds its memory file.
    const holder = spawn("sh", ["-c", `exec 3<'${path.join(held, "memory.raw")}'; exec sleep 60`]);
    holders.push(holder);
    await waitFor(async () => (await filesInUseUnder(root)).has(path.join(held, "memory.raw")) || undefined, {
      what: "the holder to open the file",
    });

    // Room for three entries of five: oldest and older go (held is skipped), recent stays as the budget is met.
    const report = await enforceCacheBudget(root, 200 * KIB);
    expect(report.evicted).toEqual([oldest, older]);
    for (const kept of [held, recent, fresh]) expect(existsSync(kept)).toBe(true);

    // Room for two: held goes once nothing holds it; fresh stays even while over budget.
    expect((await enforceCacheBudget(root, 64 * KIB)).evicted).toEqual([recent]);
    holder.kill("SIGKILL");
    await waitFor(async () => !(await filesInUseUnder(root)).size || undefined, { what: "the holder to exit" });
    const next = await enforceCacheBudget(root, 64 * KIB);
    expect(next.evicted).toEqual([held]);
    expect(next.overBudgetBytes).toBe(0);
  });
});
