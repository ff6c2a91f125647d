// The squashfs writer against the real readers: unsquashfs lists and extracts byte-exact, the kernel mounts the
// image (as root) and reads it back byte-exact, and verifyImage catches a damaged block or sidecar.
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { open, readFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { itWith } from "../../test/helpers/needs.ts";
import { type BlockCodec, blockCodec } from "../codec/index.ts";
import { checksumsFile, ImageIntegrityError, verifyImage } from "./checksums.ts";
import { BLOCK_SIZE } from "./format.ts";
import { writeSquashfsImage } from "./writer.ts";

const MIB = 1 << 20;
const dir = mkdtempSync(path.join(os.tmpdir(), "squashfs-writer-"));

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A sparse file of `size` bytes with `writes` of data at their offsets. */
async function sparseFile(name: string, size: number, writes: [number, Buffer][]): Promise<string> {
  const file = path.join(dir, name);
  const handle = await open(file, "w");
  await handle.truncate(size);
  for (const [offset, data] of writes) await handle.write(data, 0, data.length, offset);
  await handle.close();
  return file;
}

function filesEqual(left: string, right: string): boolean {
  try {
    execFileSync("cmp", ["--silent", left, right]);
    return true;
  } catch {
    return false;
  }
}

function extract(image: string): string {
  const target = path.join(dir, `${path.basename(image)}.extracted`);
  rmSync(target, { recursive: true, force: true });
  execFileSync("unsquashfs", ["-no-progress", "-d", target, image], { stdio: "ignore" });
  return target;
}

const CASES = [
  {
    name: "mixed",
    size: 6 * MIB + 12_345, // a short tail block
    writes: (): [number, Buffer][] => [
      [100, Buffer.from("hello squashfs ".repeat(1000))],
      [3 * MIB + 5, Buffer.alloc(300_000, 7)],
      [3 * MIB + 400_000, randomBytes(2 * MIB)], // incompressible: stored uncompressed
    ],
  },
  { name: "all-holes", size: 2 * MIB, writes: (): [number, Buffer][] => [] },
  { name: "explicit-zeros", size: 2 * MIB, writes: (): [number, Buffer][] => [[0, Buffer.alloc(2 * MIB)]] },
  { name: "empty", size: 0, writes: (): [number, Buffer][] => [] },
  {
    // 2100 blocks: the block list (8400 bytes) spans two metadata blocks, and the file is over 2 GiB. The layout
    // does not depend on the compressor: zstd only, as comparing 2 GiB twice is slow.
    name: "large-sparse",
    zstdOnly: true,
    size: 2100 * BLOCK_SIZE,
    writes: (): [number, Buffer][] => [
      [0, Buffer.from("first")],
      [2099 * BLOCK_SIZE + 17, randomBytes(4096)],
    ],
  },
];

describe.each(["zstd", "lz4"] as const)("writeSquashfsImage with %s", (algorithm) => {
  it.each(CASES.filter((testCase) => algorithm === "zstd" || !testCase.zstdOnly))(
    "$name: unsquashfs lists the file and extracts it byte-exact",
    async ({ name, size, writes }) => {
      const source = await sparseFile(`${algorithm}-${name}.raw`, size, writes());
      const image = path.join(dir, `${algorithm}-${name}.sqfs`);
      const result = await writeSquashfsImage(source, image, {
        algorithm,
        level: algorithm === "zstd" ? 3 : 9,
        name: "memory.raw",
      });
      expect(result.uncompressedBytes).toBe(size);
      expect(result.blockCount).toBe(Math.ceil(size / BLOCK_SIZE));
      expect(result.imageBytes % 4096).toBe(0);
      await verifyImage(image);

      const listing = execFileSync("unsquashfs", ["-lls", image], { encoding: "utf8" });
      expect(listing).toMatch(new RegExp(`-rw------- root/root\\s+${size} .* squashfs-root/memory\\.raw`));
      expect(filesEqual(path.join(extract(image), "memory.raw"), source)).toBe(true);
    },
  );

  itWith("root", "the kernel mounts the image read-only and reads it back byte-exact", async () => {
    const { size, writes } = CASES[0]!;
    const source = await sparseFile(`${algorithm}-mount.raw`, size, writes());
    const image = path.join(dir, `${algorithm}-mount.sqfs`);
    await writeSquashfsImage(source, image, { algorithm, name: "memory.raw" });
    const mountPoint = path.join(dir, `${algorithm}-mnt`);
    mkdirSync(mountPoint);
    execFileSync("mount", ["-t", "squashfs", "-o", "loop,ro", image, mountPoint]);
    try {
      expect(filesEqual(path.join(mountPoint, "memory.raw"), source)).toBe(true);
    } finally {
      execFileSync("umount", [mountPoint]);
    }
  });
});

// The packages backend writes the same images: zstd frames from @mongodb-js/zstd, raw LZ4 blocks from lz4-napi.
describe.each(["zstd", "lz4"] as const)("writeSquashfsImage with %s on the packages backend", (algorithm) => {
  it("unsquashfs extracts the file byte-exact", async () => {
    const { size, writes } = CASES[0]!;
    const source = await sparseFile(`packages-${algorithm}.raw`, size, writes());
    const image = path.join(dir, `packages-${algorithm}.sqfs`);
    await writeSquashfsImage(source, image, { algorithm, name: "memory.raw", backend: "packages" });
    await verifyImage(image);
    expect(filesEqual(path.join(extract(image), "memory.raw"), source)).toBe(true);
  });
});

it("keeps zstd blocks as plain zstd frames and records the level", async () => {
  const data = Buffer.from("a zstd frame ".repeat(10_000));
  const source = await sparseFile("frame.raw", data.length, [[0, data]]);
  const image = path.join(dir, "frame.sqfs");
  await writeSquashfsImage(source, image, { algorithm: "zstd", level: 7 });
  expect(execFileSync("unsquashfs", ["-s", image], { encoding: "utf8" })).toMatch(/compression-level 7/);
  // The one data block starts after the superblock (96 bytes) and the options block (2 + 4 bytes).
  const [, length] = JSON.parse(readFileSync(checksumsFile(image), "utf8")).pieces[1] as [number, number];
  const frame = (await readFile(image)).subarray(102, 102 + length);
  const decoded = execFileSync("zstd", ["-d", "-c"], { input: frame });
  expect(decoded.equals(data)).toBe(true);
});

describe("verifyImage", () => {
  async function freshImage(name: string): Promise<string> {
    const source = await sparseFile(`${name}.raw`, 3 * MIB, [[MIB, randomBytes(MIB)]]);
    const image = path.join(dir, `${name}.sqfs`);
    await writeSquashfsImage(source, image, { algorithm: "zstd" });
    return image;
  }

  it("refuses an image with one flipped byte in a data block, naming where", async () => {
    const image = await freshImage("flipped");
    const handle = await open(image, "r+");
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, 5000);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, 5000);
    await handle.close();
    await expect(verifyImage(image)).rejects.toThrow(/is damaged: the \d+ bytes at offset 102 fail their checksum/);
  });

  it("reads a 20 MiB image in runs of pieces: the whole image passes, one flipped byte in any piece fails", async () => {
    // Random data stays uncompressed: 1 MiB pieces, read two at a time while the previous two are hashed.
    const source = await sparseFile("large.raw", 20 * MIB, [[0, randomBytes(20 * MIB)]]);
    const image = path.join(dir, "large.sqfs");
    await writeSquashfsImage(source, image, { algorithm: "zstd" });
    await verifyImage(image);
    const pieces: [number, number, string][] = JSON.parse(readFileSync(checksumsFile(image), "utf8")).pieces;
    expect(pieces.length).toBeGreaterThan(20);
    for (const [offset, length] of [pieces[2]!, pieces[11]!, pieces.at(-2)!]) {
      const at = offset + length - 1;
      const handle = await open(image, "r+");
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, at);
      await handle.write(Buffer.from([byte[0]! ^ 0x01]), 0, 1, at);
      await expect(verifyImage(image)).rejects.toThrow(`the ${length} bytes at offset ${offset} fail their checksum`);
      await handle.write(byte, 0, 1, at);
      await handle.close();
    }
    await verifyImage(image);
  });

  it("refuses a truncated image and a missing or damaged checksum list", async () => {
    const image = await freshImage("truncated");
    const handle = await open(image, "r+");
    await handle.truncate(4096);
    await handle.close();
    await expect(verifyImage(image)).rejects.toThrow(ImageIntegrityError);

    const other = await freshImage("sidecar");
    writeFileSync(checksumsFile(other), "{not json");
    await expect(verifyImage(other)).rejects.toThrow(/checksum list .* is damaged/);
    rmSync(checksumsFile(other));
    await expect(verifyImage(other)).rejects.toThrow(/checksum list .* is missing/);
  });
});

describe("read-back before the image is put in place", () => {
  /** The real codec, with one block's compression going wrong the way a writer or codec bug would. */
  async function faultyCodec(fault: "wrong input" | "garbled output"): Promise<BlockCodec> {
    const real = await blockCodec();
    let calls = 0;
    return {
      ...real,
      async compress(algorithm, level, block, output) {
        if (++calls !== 2) return real.compress(algorithm, level, block, output);
        if (fault === "wrong input") {
          const altered = Buffer.from(block);
          altered[17] = altered[17]! ^ 0x5a; // encodes bytes the raw file does not hold; its checksums still match
          return real.compress(algorithm, level, altered, output);
        }
        const compressed = await real.compress(algorithm, level, block, output);
        compressed.bytes[compressed.bytes.length >> 1]! ^= 0xff;
        return compressed;
      },
    };
  }

  for (const algorithm of ["zstd", "lz4"] as const) {
    for (const fault of ["wrong input", "garbled output"] as const) {
      it(`${algorithm}: a block that does not decode to its raw bytes (${fault}) leaves no image and no sidecar`, async () => {
        const text = Buffer.from("snapfleet memory page ".repeat(60_000)).subarray(0, 3 * MIB);
        const source = await sparseFile(`faulty-${algorithm}-${fault}.raw`, 4 * MIB, [[0, text]]);
        const image = path.join(dir, `faulty-${algorithm}-${fault.replace(" ", "-")}.sqfs`);
        const codec = await faultyCodec(fault);
        await expect(writeSquashfsImage(source, image, { algorithm, codec })).rejects.toMatchObject({
          name: "CodecError",
          code: "corrupt",
        });
        expect(existsSync(image)).toBe(false);
        expect(existsSync(checksumsFile(image))).toBe(false);
        expect(readdirSync(dir).filter((name) => name.startsWith(`.${path.basename(image)}.`))).toEqual([]);
        // The same source with the real codec goes through and extracts byte-exact.
        await writeSquashfsImage(source, image, { algorithm });
        expect(filesEqual(path.join(extract(image), path.basename(source)), source)).toBe(true);
      });
    }
  }
});
