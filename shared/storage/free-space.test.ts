import { randomBytes } from "node:crypto";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { tempDir } from "../../test/helpers/fixtures.ts";
import { describeWith } from "../../test/helpers/needs.ts";
import { ApiError } from "../errors.ts";
import { run } from "../hypervisor/exec.ts";
import { copyFileSparse } from "../hypervisor/sparse-copy.ts";
import {
  allocatedBytesOf,
  asInsufficientStorage,
  assertFreeSpace,
  availableBytes,
  isNoSpaceError,
} from "./free-space.ts";

// A pure mapping: needs no file system, so it runs everywhere.
it("leaves errors other than ENOSPC as they are", () => {
  const other = new Error("EACCES: permission denied");
  expect(asInsufficientStorage(other, "host-a", "x")).toBe(other);
  const conflict = new ApiError("conflict", "taken");
  expect(asInsufficientStorage(conflict, "host-a", "x")).toBe(conflict);
});

describeWith("root", "free space on a full file system (a 4 MiB tmpfs)", () => {
  const data = tempDir("free-space");
  const mountPoint = path.join(data.dir, "small-fs");
  const source = path.join(data.dir, "payload.raw");

  beforeAll(async () => {
    await mkdir(mountPoint);
    await run("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mountPoint]);
    await writeFile(source, randomBytes(6 * 1024 ** 2)); // incompressible, no holes: 6 MiB allocated
  });
  afterAll(async () => {
    await run("umount", [mountPoint]);
    data.remove();
  });

  it("measures what is free and what a file occupies", async () => {
    expect(await availableBytes(mountPoint)).toBeLessThanOrEqual(4 * 1024 ** 2);
    expect(await allocatedBytesOf([source, path.join(data.dir, "missing")])).toBeGreaterThanOrEqual(6 * 1024 ** 2);
  });

  it("refuses up front with 507 insufficient_storage naming the host", async () => {
    const error = await assertFreeSpace(mountPoint, 6 * 1024 ** 2, "host-a").catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ code: "insufficient_storage", status: 507 });
    expect((error as ApiError).message).toMatch(/^host host-a: no space left on device \(.* MiB free/);
    await expect(assertFreeSpace(mountPoint, 0, "host-a")).rejects.toThrow(); // the margin does not fit either
    await expect(assertFreeSpace(data.dir, 1024, "host-a")).resolves.toBeUndefined();
  });

  it("turns a copy that runs out of space into 507 and leaves no partial file", async () => {
    const error = await copyFileSparse(source, path.join(mountPoint, "memory.raw")).catch((caught: unknown) => caught);
    expect(isNoSpaceError(error)).toBe(true);
    const mapped = asInsufficientStorage(error, "host-a", "snapshot s1");
    expect(mapped).toMatchObject({ code: "insufficient_storage", status: 507 });
    expect((mapped as ApiError).message).toBe("host host-a: no space left on device (while writing snapshot s1)");
    expect(await readdir(mountPoint)).toEqual([]);
  });
});
