import { randomBytes } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { describeWith } from "../../test/helpers/needs.ts";
import { codecBackend } from "./backend.ts";
import { encodeTrailer, trailerLength } from "./format.ts";
import { CODEC_BACKEND_NAMES, CodecError, compressFile, decompressFile, readCompressedHeader } from "./index.ts";
import { listFiles, makeTemporaryDirectory, run, TEST_CHUNK_SIZE } from "./test-files.ts";

let directory: string;
let removeDirectory: () => Promise<void>;
let source: string;
beforeAll(async () => {
  ({ directory, remove: removeDirectory } = await makeTemporaryDirectory("failures"));
  source = path.join(directory, "source.raw");
  await writeFile(source, randomBytes(32 * TEST_CHUNK_SIZE)); // 2 MiB that does not compress
});
afterAll(() => removeDirectory());

describe.each(CODEC_BACKEND_NAMES)("%s backend", (backend) => {
  describe("cancellation", () => {
    it.each(["compress", "decompress"] as const)("stops a %s midway and leaves nothing behind", async (operation) => {
      const output = path.join(directory, `cancelled-${backend}-${operation}`);
      await mkdir(output);
      const compressed = path.join(directory, `for-cancel-${backend}.zst`);
      if (operation === "decompress")
        await compressFile(source, compressed, { backend, algorithm: "zstd", chunkSize: TEST_CHUNK_SIZE });
      const controller = new AbortController();
      const onProgress = (done: number) => {
        if (done >= 4 * TEST_CHUNK_SIZE) controller.abort();
      };
      const options = { backend, signal: controller.signal, onProgress, concurrency: 2 };
      const work =
        operation === "compress"
          ? compressFile(source, path.join(output, "file.zst"), {
              ...options,
              algorithm: "zstd",
              chunkSize: TEST_CHUNK_SIZE,
            })
          : decompressFile(compressed, path.join(output, "file.raw"), options);

      await expect(work).rejects.toMatchObject({ name: "AbortError" });
      expect(await listFiles(output)).toEqual([]);
    });

    it("does nothing when the signal is already aborted", async () => {
      const destination = path.join(directory, `never-${backend}.zst`);
      const work = compressFile(source, destination, { backend, algorithm: "lz4", signal: AbortSignal.abort() });
      await expect(work).rejects.toMatchObject({ name: "AbortError" });
      expect(await listFiles(directory)).not.toContain(`never-${backend}.zst`);
    });
  });

  describe("I/O errors", () => {
    it("names the step that could not open its file", async () => {
      const work = compressFile(path.join(directory, "missing.raw"), path.join(directory, "x.zst"), {
        backend,
        algorithm: "zstd",
      });
      await expect(work).rejects.toThrow("open source file: no such file or directory");
    });

    describeWith("root", "on a full filesystem (a 256 KiB tmpfs)", () => {
      let mountPoint: string;
      beforeAll(async () => {
        mountPoint = path.join(directory, `small-fs-${backend}`);
        await mkdir(mountPoint);
        await run("mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mountPoint]);
      });
      afterAll(() => run("umount", [mountPoint]));

      it("compress fails with `write compressed stream: no space left on device` and cleans up", async () => {
        const work = compressFile(source, path.join(mountPoint, "file.lz4"), {
          backend,
          algorithm: "lz4",
          chunkSize: TEST_CHUNK_SIZE,
        });
        const error = await work.catch((caught: unknown) => caught);
        expect(error).toBeInstanceOf(CodecError);
        expect((error as CodecError).message).toBe("write compressed stream: no space left on device");
        expect(await listFiles(mountPoint)).toEqual([]);
      });

      it("decompress fails with `write decompressed file: no space left on device` and cleans up", async () => {
        const compressed = path.join(directory, `for-enospc-${backend}.zst`);
        await compressFile(source, compressed, { backend, algorithm: "zstd", chunkSize: TEST_CHUNK_SIZE });
        const work = decompressFile(compressed, path.join(mountPoint, "file.raw"), { backend });
        await expect(work).rejects.toThrow("write decompressed file: no space left on device");
        expect(await listFiles(mountPoint)).toEqual([]);
      });
    });
  });
});

describe("sizes a file declares", () => {
  it("refuses a seek table whose chunk size is beyond the format's bounds before decoding anything", async () => {
    const small = path.join(directory, "small.raw");
    await writeFile(small, randomBytes(10_000));
    const compressed = path.join(directory, "small.zst");
    await compressFile(small, compressed, { algorithm: "zstd", chunkSize: TEST_CHUNK_SIZE });
    const bytes = await readFile(compressed);
    const backend = await codecBackend();
    const framesLength = bytes.length - trailerLength(1);
    const header = await readCompressedHeader(compressed);
    // The one chunk's entry as it is, under an index that claims 2 GiB chunks (its checksum recomputed).
    const entryAt = bytes.length - 9 - 12; // the last seek table entry sits before the 9-byte footer
    const chunk = {
      frameOffset: 0,
      frameLength: bytes.readUInt32LE(entryAt),
      offset: 0,
      length: bytes.readUInt32LE(entryAt + 4),
      checksum: bytes.readUInt32LE(entryAt + 8),
      zero: false,
    };
    const trailer = encodeTrailer(
      { algorithm: "zstd", level: 1, chunkSize: 2 ** 31, uncompressedSize: header.uncompressedSize, chunks: [chunk] },
      backend.checksum,
    );
    const hostile = path.join(directory, "huge-chunk.zst");
    await writeFile(hostile, Buffer.concat([bytes.subarray(0, framesLength), trailer]));
    await expect(readCompressedHeader(hostile)).rejects.toThrow(/chunk size of 2147483648 bytes, outside/);
    await expect(decompressFile(hostile, path.join(directory, "huge-chunk.raw"))).rejects.toBeInstanceOf(CodecError);
  });
});
