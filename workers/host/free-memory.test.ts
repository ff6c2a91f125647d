import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { assertFreeMemory, parseMemAvailable } from "./free-memory.ts";

describe("free memory before a fork or restore", () => {
  const dirs: string[] = [];
  afterAll(() => Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true }))));

  it("reads MemAvailable from this machine's /proc/meminfo", async () => {
    const available = parseMemAvailable(await readFile("/proc/meminfo", "utf8"));
    expect(available).toBeGreaterThan(64 * 1024 ** 2);
    expect(available! % 1024).toBe(0);
  });

  it("lets a guest that fits through and refuses one that does not with 409 insufficient_resources", async () => {
    const available = parseMemAvailable(await readFile("/proc/meminfo", "utf8"))!;
    await expect(assertFreeMemory(128 * 1024 ** 2, "h1")).resolves.toBeUndefined();
    await expect(assertFreeMemory(available + 4 * 1024 ** 3, "h1")).rejects.toMatchObject({
      code: "insufficient_resources",
      status: 409,
      message: expect.stringContaining("host h1 has"),
    });
  });

  it("does not refuse when the kernel reports no MemAvailable", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "meminfo-"));
    dirs.push(dir);
    const file = path.join(dir, "meminfo");
    await writeFile(file, "MemTotal:       1024 kB\nMemFree:         512 kB\n");
    expect(parseMemAvailable(await readFile(file, "utf8"))).toBeUndefined();
    await expect(assertFreeMemory(1024 ** 3, "h1", file)).resolves.toBeUndefined();
  });
});
