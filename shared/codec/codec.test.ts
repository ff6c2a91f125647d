import { randomBytes } from "node:crypto";
import { mkdir, readFile, truncate, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CODEC_BACKEND_NAMES, CodecError, compressFile, decompressFile, LZ4_LEVELS, ZSTD_LEVELS } from "./index.ts";
import type { CompressionAlgorithm } from "./options.ts";
import {
  allocatedBytes,
  INPUTS,
  listFiles,
  makeTemporaryDirectory,
  run,
  TEST_CHUNK_SIZE,
  textBytes,
  writeSparseFile,
} from "./test-files.ts";

let rootDirectory: string;
let removeDirectory: () => Promise<void>;
beforeAll(async () => {
  ({ directory: rootDirectory, remove: removeDirectory } = await makeTemporaryDirectory("roundtrip"));
});
afterAll(() => removeDirectory());

const COMMAND_DECODERS: Record<CompressionAlgorithm, string[]> = {
  zstd: ["zstd", "-d", "-c"],
  lz4: ["lz4", "-d", "-c"],
};

async function decodeWithCommand(algorithm: CompressionAlgorithm, file: string): Promise<Buffer> {
  const [command, ...args] = COMMAND_DECODERS[algorithm];
  const { stdout } = await run(command!, [...args, file], { encoding: "buffer", maxBuffer: 64 << 20 });
  return stdout;
}

const LEVEL_CASES = [
  { algorithm: "zstd", level: ZSTD_LEVELS.min },
  { algorithm: "zstd", level: ZSTD_LEVELS.max },
  { algorithm: "lz4", level: LZ4_LEVELS.min },
  { algorithm: "lz4", level: LZ4_LEVELS.max },
] as const;

// Every case runs on both backends: the same file format from either (cross-backend reads: backends.test.ts).
describe.each(CODEC_BACKEND_NAMES)("%s backend", (backend) => {
  let directory: string;
  beforeAll(async () => {
    directory = path.join(rootDirectory, backend);
    await mkdir(directory);
  });

  describe.each(LEVEL_CASES)("$algorithm level $level", ({ algorithm, level }) => {
    it.each(INPUTS)("round-trips $name byte-exact, also through the command-line decoder", async (input) => {
      const base = path.join(directory, `${algorithm}-${level}-${input.name.replace(/\W+/g, "_")}`);
      const expected = await input.write(`${base}.raw`);
      const progress: number[] = [];
      const result = await compressFile(`${base}.raw`, `${base}.cmp`, {
        backend,
        algorithm,
        level,
        chunkSize: TEST_CHUNK_SIZE,
        onProgress: (done, total) => {
          expect(total).toBe(expected.length);
          progress.push(done);
        },
      });

      expect(result.uncompressedBytes).toBe(expected.length);
      expect(result.chunkCount).toBe(Math.ceil(expected.length / TEST_CHUNK_SIZE));
      expect(progress.at(-1)).toBe(expected.length);
      await decompressFile(`${base}.cmp`, `${base}.out`, { backend });
      expect((await readFile(`${base}.out`)).equals(expected)).toBe(true);
      expect((await decodeWithCommand(algorithm, `${base}.cmp`)).equals(expected)).toBe(true);
      if (input.sparse) expect(await allocatedBytes(`${base}.out`)).toBeLessThan(expected.length / 2);
    });
  });

  describe("zero chunks", () => {
    it("stores holes and zero data as shared frames and decompresses them to holes", async () => {
      const size = 64 * TEST_CHUNK_SIZE;
      const source = path.join(directory, "mostly-hole.raw");
      const expected = await writeSparseFile(source, size, [
        { offset: 3 * TEST_CHUNK_SIZE, bytes: randomBytes(TEST_CHUNK_SIZE) },
        { offset: 10 * TEST_CHUNK_SIZE, bytes: Buffer.alloc(TEST_CHUNK_SIZE) },
      ]);
      const result = await compressFile(source, `${source}.zst`, {
        backend,
        algorithm: "zstd",
        chunkSize: TEST_CHUNK_SIZE,
      });

      expect(result.zeroChunkCount).toBe(63);
      expect(result.compressedBytes).toBeLessThan(TEST_CHUNK_SIZE + 63 * 64 + 2048);
      await decompressFile(`${source}.zst`, `${source}.out`, { backend });
      expect((await readFile(`${source}.out`)).equals(expected)).toBe(true);
      expect(await allocatedBytes(`${source}.out`)).toBeLessThanOrEqual(2 * TEST_CHUNK_SIZE);
    });
  });

  describe("damaged input", () => {
    let compressed: string;
    let frameOfChunkOne: { offset: number; length: number };
    beforeAll(async () => {
      const source = path.join(directory, "damage.raw");
      await writeFile(source, Buffer.concat([textBytes(2 * TEST_CHUNK_SIZE), randomBytes(TEST_CHUNK_SIZE)]));
      compressed = `${source}.zst`;
      await compressFile(source, compressed, { backend, algorithm: "zstd", chunkSize: TEST_CHUNK_SIZE });
      const bytes = await readFile(compressed);
      // The second frame starts where the first ends: find it by the zstd frame magic after byte 4.
      const second = bytes.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), 4);
      const third = bytes.indexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), second + 4);
      frameOfChunkOne = { offset: second, length: third - second };
    });

    async function damagedCopy(name: string, damage: (bytes: Buffer) => Buffer): Promise<string> {
      const file = path.join(directory, name);
      await writeFile(file, damage(Buffer.from(await readFile(compressed))));
      return file;
    }

    async function expectRejected(file: string, pattern: RegExp): Promise<void> {
      const destination = `${file}.out`;
      const before = await listFiles(directory);
      const error = await decompressFile(file, destination, { backend }).catch((caught: unknown) => caught);
      expect(error).toBeInstanceOf(CodecError);
      expect((error as CodecError).message).toMatch(pattern);
      expect(await listFiles(directory)).toEqual(before);
    }

    it("names the chunk whose frame has a flipped byte", async () => {
      const file = await damagedCopy("flipped.zst", (bytes) => {
        const at = frameOfChunkOne.offset + Math.floor(frameOfChunkOne.length / 2);
        bytes[at] = bytes[at]! ^ 0x40;
        return bytes;
      });
      await expectRejected(file, /chunk 1 \(bytes 65536–131071\) is corrupt/);
    });

    it("detects a flipped byte in the seek table", async () => {
      const file = await damagedCopy("table.zst", (bytes) => {
        bytes[bytes.length - 20] = bytes[bytes.length - 20]! ^ 0x01;
        return bytes;
      });
      await expectRejected(file, /damaged index or seek table/);
    });

    it("detects a truncated file", async () => {
      const file = await damagedCopy("truncated.zst", (bytes) => bytes);
      await truncate(file, (await readFile(file)).length - 100);
      await expectRejected(file, /truncated/);
    });

    it("detects missing frame bytes even with an intact trailer", async () => {
      const file = await damagedCopy("short-frame.zst", (bytes) =>
        Buffer.concat([bytes.subarray(0, frameOfChunkOne.offset + 10), bytes.subarray(frameOfChunkOne.offset + 11)]),
      );
      await expectRejected(file, /truncated or damaged/);
    });

    it("names a zero chunk whose shared frame is damaged", async () => {
      const source = path.join(directory, "zero-damage.raw");
      await writeSparseFile(source, 4 * TEST_CHUNK_SIZE, [{ offset: 0, bytes: randomBytes(100) }]);
      await compressFile(source, `${source}.zst`, { backend, algorithm: "zstd", chunkSize: TEST_CHUNK_SIZE });
      const bytes = await readFile(`${source}.zst`);
      const lastZeroFrame = bytes.lastIndexOf(Buffer.from([0x28, 0xb5, 0x2f, 0xfd]));
      bytes[lastZeroFrame + 6] = bytes[lastZeroFrame + 6]! ^ 0x10;
      await writeFile(`${source}.zst`, bytes);
      await expectRejected(`${source}.zst`, /chunk 3 \(bytes 196608–262143\) is corrupt/);
    });

    it("rejects a file that is not in the chunked format", async () => {
      const file = path.join(directory, "plain.zst");
      await run("zstd", ["-q", "-f", "-o", file, compressed]);
      await expectRejected(file, /no seek table at its end/);
    });
  });
});
