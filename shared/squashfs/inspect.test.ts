// The strict image reader: what our writer makes passes; mksquashfs images with a symlink, a device node, a FIFO or
// an extra file, a wrong name or size, and a damaged table are each refused before anything mounts them.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ImageIntegrityError } from "./checksums.ts";
import { checkImageStructure } from "./inspect.ts";
import { writeSquashfsImage } from "./writer.ts";

const MIB = 1 << 20;
const dir = mkdtempSync(path.join(os.tmpdir(), "squashfs-inspect-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SIZE = 3 * MIB + 4321;

function source(name: string): string {
  const file = path.join(dir, name);
  const data = Buffer.alloc(SIZE);
  randomBytes(MIB).copy(data, MIB);
  data.fill("snapfleet", 2 * MIB + 10, 2 * MIB + 90_000);
  writeFileSync(file, data);
  return file;
}

/** An image mksquashfs builds from a directory holding memory.raw plus whatever `extra` adds. */
function mksquashfs(name: string, extra: (root: string) => void): string {
  const root = path.join(dir, `${name}-root`);
  mkdirSync(root);
  writeFileSync(path.join(root, "memory.raw"), Buffer.alloc(SIZE));
  extra(root);
  const image = path.join(dir, `${name}.sqfs`);
  execFileSync("mksquashfs", [root, image, "-comp", "zstd", "-b", "1M", "-noappend", "-no-progress"], {
    stdio: "ignore",
  });
  return image;
}

const refused = (image: string, expected = { name: "memory.raw", size: SIZE }) =>
  expect(checkImageStructure(image, expected)).rejects.toBeInstanceOf(ImageIntegrityError);

describe("checkImageStructure", () => {
  it("accepts what our writer makes, zstd and lz4, and nothing of another name or size", async () => {
    for (const algorithm of ["zstd", "lz4"] as const) {
      const image = path.join(dir, `ours-${algorithm}.sqfs`);
      await writeSquashfsImage(source(`memory-${algorithm}`), image, { algorithm, level: 3, name: "memory.raw" });
      await checkImageStructure(image, { name: "memory.raw", size: SIZE });
      await refused(image, { name: "disk.raw", size: SIZE });
      await refused(image, { name: "memory.raw", size: SIZE + 1 });
      await refused(image, { name: "memory.raw", size: SIZE - 4096 });
    }
  });

  it("refuses a damaged block list and trailing data", async () => {
    const image = path.join(dir, "ours.sqfs");
    await writeSquashfsImage(source("memory-damaged"), image, { algorithm: "zstd", level: 1, name: "memory.raw" });
    const bytes = readFileSync(image);
    const inodeTableStart = Number(bytes.readBigUInt64LE(64));
    const blockList = inodeTableStart + 2 + 56;
    const damaged = Buffer.from(bytes);
    damaged.writeUInt32LE(damaged.readUInt32LE(blockList + 4) + 1, blockList + 4);
    writeFileSync(path.join(dir, "block-list.sqfs"), damaged);
    await refused(path.join(dir, "block-list.sqfs"));
    writeFileSync(path.join(dir, "longer.sqfs"), Buffer.concat([bytes, Buffer.alloc(4096, 1)]));
    await refused(path.join(dir, "longer.sqfs"));
  });

  it("refuses mksquashfs images with a symlink, a device node, a FIFO or an extra file", async () => {
    await refused(mksquashfs("plain", () => {}));
    const symlinkOnly = path.join(dir, "symlink-root");
    mkdirSync(symlinkOnly);
    symlinkSync("/etc/shadow", path.join(symlinkOnly, "memory.raw"));
    const symlinkImage = path.join(dir, "symlink.sqfs");
    execFileSync("mksquashfs", [symlinkOnly, symlinkImage, "-comp", "zstd", "-noappend", "-no-progress"], {
      stdio: "ignore",
    });
    await refused(symlinkImage);
    await refused(mksquashfs("device", (root) => execFileSync("mknod", [path.join(root, "vda"), "b", "254", "0"])));
    await refused(mksquashfs("fifo", (root) => execFileSync("mkfifo", [path.join(root, "pipe")])));
    await refused(mksquashfs("extra", (root) => writeFileSync(path.join(root, "extra"), "more")));
  });
});
