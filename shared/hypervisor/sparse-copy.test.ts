import { createHash } from "node:crypto";
import { mkdtemp, open, readdir, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { copyFileSparse } from "./sparse-copy.ts";

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
