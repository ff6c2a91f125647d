import { mkdtemp, readdir, rm, stat } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage } from "../../scripts/build-image.ts";
import { ImageError } from "./errors.ts";
import { IMAGE_FORMAT_VERSION, loadImage } from "./image.ts";

let imagesDir: string;

beforeAll(async () => {
  imagesDir = await mkdtemp(path.join(os.tmpdir(), "snapfleet-images-"));
});
afterAll(async () => {
  await rm(imagesDir, { recursive: true, force: true });
});

describe("guest image builder", { timeout: 300_000 }, () => {
  it("builds the busybox image once even when two builders race, leaving no work dirs", async () => {
    const [first, second] = await Promise.all([buildImage({ imagesDir }), buildImage({ imagesDir })]);
    expect(second.manifest).toEqual(first.manifest);
    expect(await readdir(imagesDir)).toEqual(["busybox"]);
    expect((await readdir(path.join(imagesDir, "busybox"))).sort()).toEqual(["initrd.img", "manifest.json", "vmlinuz"]);
    expect(first.manifest).toMatchObject({
      name: "busybox",
      version: IMAGE_FORMAT_VERSION,
      kernel: "vmlinuz",
      initrd: "initrd.img",
    });
    expect(first.manifest.sources.map((source) => source.split("=")[0])).toEqual([
      expect.stringMatching(/^linux-image-\d/),
      "busybox-static",
    ]);
    expect((await stat(first.kernelPath)).size).toBeGreaterThan(1024 * 1024);
  });

  it("is a no-op when the image exists", async () => {
    const before = await loadImage("busybox", imagesDir);
    const again = await buildImage({ imagesDir });
    expect(again.manifest.builtAt).toBe(before.manifest.builtAt);
  });

  it("rejects unknown images and reports a missing one", async () => {
    await expect(buildImage({ name: "ubuntu", imagesDir })).rejects.toBeInstanceOf(ImageError);
    await expect(loadImage("ubuntu", imagesDir)).rejects.toThrow(/not found/);
  });
});
