import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, open, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { itWith } from "../../test/helpers/needs.ts";
import { fsyncPath } from "../files.ts";
import { copyFileSparse, copySparseIntoStaging, sharesExtents } from "./sparse-copy.ts";

const MIB = 1024 * 1024;
let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), "snapfleet-sparse-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function sha256(file: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
}

describe("copyFileSparse", () => {
  it("copies content exactly and keeps holes and zero blocks unallocated", async () => {
    const source = path.join(dir, "memory.raw");
    const handle = await open(source, "w");
    await handle.truncate(64 * MIB);
    await handle.write(Buffer.alloc(MIB, 0xab), 0, MIB, 3 * MIB);
    await handle.write(Buffer.alloc(4 * MIB, 0), 0, 4 * MIB, 10 * MIB); // allocated but zero
    await handle.write(Buffer.from("end"), 0, 3, 64 * MIB - 3);
    await handle.close();

    const result = await copyFileSparse(source, path.join(dir, "copy.raw"));
    expect(result.size).toBe(64 * MIB);
    expect(result.allocatedBytes).toBeLessThan(2 * MIB);
    expect(await sha256(path.join(dir, "copy.raw"))).toBe(await sha256(source));
    expect((await readdir(dir)).sort()).toEqual(["copy.raw", "memory.raw"]);
  });

  it("leaves no temp file when the source is missing", async () => {
    await expect(copyFileSparse(path.join(dir, "missing"), path.join(dir, "copy.raw"))).rejects.toThrow();
    expect(await readdir(dir)).toEqual([]);
  });
});

describe("copySparseIntoStaging", () => {
  itWith(
    "root",
    "on XFS shares the source's extents (a reflink: no data written in the pause); ext4 copies",
    async () => {
      const mountPoint = path.join(dir, "xfs");
      const image = path.join(dir, "xfs.img");
      await mkdir(mountPoint);
      execFileSync("truncate", ["-s", "512M", image]);
      execFileSync("mkfs.xfs", ["-q", "-m", "reflink=1", image]);
      execFileSync("mount", ["-o", "loop", image, mountPoint]);
      try {
        const source = path.join(mountPoint, "memory.raw");
        const handle = await open(source, "w");
        await handle.write(Buffer.alloc(8 * MIB, 0x5a), 0, 8 * MIB, 0);
        await handle.close(); // dirty pages in the page cache, as a running guest leaves them
        expect(await sharesExtents(source)).toBe(true);
        await fsyncPath(source);
        const copy = path.join(mountPoint, "copy.raw");
        await copySparseIntoStaging(source, copy);
        expect(await sha256(copy)).toBe(await sha256(source));
        // Every extent of the copy is flagged shared: the blocks are the source's.
        const extents = execFileSync("filefrag", ["-v", copy], { encoding: "utf8" })
          .split("\n")
          .filter((line) => /^\s*\d+:/.test(line));
        expect(extents.length).toBeGreaterThan(0);
        for (const extent of extents) expect(extent).toContain("shared");
      } finally {
        execFileSync("umount", [mountPoint]);
      }
      expect(await sharesExtents(dir)).toBe(false); // the temp dir's own file system (ext4 here)
    },
  );
});
