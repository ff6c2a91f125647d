// The native codecs load on this machine and round-trip (the zstd addon needs our own install step).
import { randomBytes } from "node:crypto";
import { compress as zstdCompress, decompress as zstdDecompress } from "@mongodb-js/zstd";
import { compressFrame, decompressFrame } from "lz4-napi";
import { describe, expect, it } from "vitest";

describe("native codecs", () => {
  const input = Buffer.concat([randomBytes(4096), Buffer.alloc(65536, "snapfleet ")]);

  it("@mongodb-js/zstd compresses and decompresses", async () => {
    const compressed = await zstdCompress(input, 3);
    expect(compressed.length).toBeLessThan(input.length);
    expect(Buffer.compare(await zstdDecompress(compressed), input)).toBe(0);
  });

  it("lz4-napi compresses and decompresses LZ4 frames", async () => {
    const compressed = await compressFrame(input);
    expect(compressed.length).toBeLessThan(input.length);
    expect(Buffer.compare(await decompressFrame(compressed), input)).toBe(0);
  });
});
