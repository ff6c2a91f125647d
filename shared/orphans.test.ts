import { existsSync, mkdirSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../test/helpers/fixtures.ts";
import { removeLeftovers } from "./orphans.ts";
import { isLeftoverName, STAGING_KINDS, stagingPath, temporaryPath } from "./temp-names.ts";

const data = tempDir("orphans");
afterAll(() => data.remove());

const old = new Date(Date.now() - 3_600_000);
function file(relative: string, age: "old" | "new" = "old"): string {
  const target = path.join(data.dir, relative);
  mkdirSync(path.dirname(target), { recursive: true });
  writeFileSync(target, "x");
  if (age === "old") utimesSync(target, old, old);
  return target;
}
const ageDir = (relative: string) => utimesSync(path.join(data.dir, relative), old, old);

describe("removeLeftovers", () => {
  it("knows the names crashed work leaves behind", () => {
    for (const name of [".staging-abc", "snapshot.json.tmp-123-1700000000000", ".memory.raw.a1b2c3.tmp"]) {
      expect(isLeftoverName(name)).toBe(true);
    }
    for (const name of ["snapshot.json", "memory.raw", "memory.raw.sfc", "console.log", "tmp"]) {
      expect(isLeftoverName(name)).toBe(false);
    }
  });

  it("knows every name our temporary and staging helpers give", () => {
    for (const destination of ["/d/snapshots/s1/snapshot.json", "/d/snapshots/s1/memory.raw.sqfs", "/d/host-id"]) {
      expect(isLeftoverName(path.basename(temporaryPath(destination)))).toBe(true);
    }
    for (const kind of STAGING_KINDS)
      expect(isLeftoverName(path.basename(stagingPath("/d/snapshots", kind, "s1")))).toBe(true);
  });

  it("removes old import and pull staging dirs and hex-named temporary files", async () => {
    const root = path.join(data.dir, "named", "snapshots");
    const made = [
      ...STAGING_KINDS.map((kind) => stagingPath(root, kind, "s9")),
      temporaryPath(path.join(root, "s9", "disk.raw")),
      temporaryPath(path.join(root, "s9", "snapshot.json")),
    ];
    for (const target of made)
      file(path.relative(data.dir, path.join(target, ...(target.includes(".tmp-") ? [] : ["payload"]))));
    for (const target of made.filter((made) => !made.includes(".tmp-"))) utimesSync(target, old, old);
    const keep = file("named/snapshots/s9/disk.raw");
    expect((await removeLeftovers([root])).sort()).toEqual([...made].sort());
    expect(existsSync(keep)).toBe(true);
  });

  it("removes old staging dirs and temporary files, keeps fresh ones and everything else", async () => {
    const snapshots = path.join(data.dir, "snapshots");
    const instances = path.join(data.dir, "instances");
    const cache = path.join(data.dir, "cache");
    file("snapshots/.staging-dead/memory.raw");
    ageDir("snapshots/.staging-dead");
    file("snapshots/.staging-live/memory.raw", "new"); // a capture still copying into it
    ageDir("snapshots/.staging-live");
    const keep = [
      file("snapshots/s1/snapshot.json"),
      file("snapshots/s1/.memory.raw.fresh00.tmp", "new"),
      file("instances/i1/console.log"),
      file("cache/s2/memory.raw"),
    ];
    const gone = [
      file("snapshots/s1/.memory.raw.a1b2c3.tmp"),
      file("instances/i1/instance.json.tmp-42-1700000000000"),
      file("cache/s2/.memory.raw.d4e5f6.tmp"),
    ];
    const removed = await removeLeftovers([snapshots, instances, cache, path.join(data.dir, "missing")]);
    expect(removed.sort()).toEqual([path.join(snapshots, ".staging-dead"), ...gone].sort());
    for (const target of [...keep, path.join(snapshots, ".staging-live")]) expect(existsSync(target)).toBe(true);
    for (const target of removed) expect(existsSync(target)).toBe(false);
  });
});
