import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  CodecError,
  compressFile,
  LZ4_LEVELS,
  resolveCompressionLevel,
  validateCompressOptions,
  ZSTD_LEVELS,
} from "./index.ts";

describe("resolveCompressionLevel", () => {
  it("uses each algorithm's default when no level is given", () => {
    expect(resolveCompressionLevel("zstd")).toBe(ZSTD_LEVELS.default);
    expect(resolveCompressionLevel("lz4")).toBe(LZ4_LEVELS.default);
  });

  it.each([
    ["zstd", 1],
    ["zstd", 19],
    ["lz4", 0],
    ["lz4", 9],
  ] as const)("accepts %s level %d", (algorithm, level) => {
    expect(resolveCompressionLevel(algorithm, level)).toBe(level);
  });

  it.each([
    ["zstd", 0],
    ["zstd", 20],
    ["zstd", 1.5],
    ["zstd", Number.NaN],
    ["lz4", -1],
    ["lz4", 10],
  ] as const)("rejects %s level %d", (algorithm, level) => {
    expect(() => resolveCompressionLevel(algorithm, level)).toThrow(CodecError);
    expect(() => resolveCompressionLevel(algorithm, level)).toThrow(/level must be an integer/);
  });
});

describe("validateCompressOptions", () => {
  it.each([
    [{ algorithm: "gzip" }, /unsupported compression algorithm "gzip"/],
    [{ algorithm: "zstd", chunkSize: 3 << 20 }, /chunk size must be a power of two/],
    [{ algorithm: "zstd", chunkSize: 1024 }, /chunk size must be a power of two/],
    [{ algorithm: "lz4", concurrency: 0 }, /concurrency must be an integer/],
  ])("rejects %o", (options, message) => {
    expect(() => validateCompressOptions(options as never)).toThrow(message);
  });
});

describe("compressFile", () => {
  let directory: string;
  beforeAll(async () => {
    directory = await mkdtemp(path.join(tmpdir(), "snapfleet-codec-options-"));
  });
  afterAll(() => rm(directory, { recursive: true, force: true }));

  it("rejects a bad level before touching any file", async () => {
    const work = compressFile(path.join(directory, "does-not-exist"), path.join(directory, "out.zst"), {
      algorithm: "zstd",
      level: 22,
    });
    await expect(work).rejects.toMatchObject({
      code: "invalid_argument",
      message: expect.stringMatching(/zstd level/),
    });
    expect(await readdir(directory)).toEqual([]);
  });
});
