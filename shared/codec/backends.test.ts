// The two backends agree: the same checksums, files one writes the other reads byte-exact, and `auto` falls back.
import { randomBytes, randomInt } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BackendLog, type CodecBackend, loadCodecBackend, resolveCodecBackend } from "./backend.ts";
import { compressFile, decompressFile } from "./index.ts";
import type { CodecBackendName, CompressionAlgorithm } from "./options.ts";
import { INPUTS, makeTemporaryDirectory, TEST_CHUNK_SIZE, textBytes } from "./test-files.ts";

let directory: string;
let removeDirectory: () => Promise<void>;
beforeAll(async () => {
  ({ directory, remove: removeDirectory } = await makeTemporaryDirectory("backends"));
});
afterAll(() => removeDirectory());

describe("XXH64 checksums", () => {
  it("xxhash-wasm gives the addon's low 32 bits of XXH64 on random inputs of every length class", async () => {
    const native = await loadCodecBackend("native");
    const packages = await loadCodecBackend("packages");
    const lengths = [
      0,
      1,
      3,
      4,
      7,
      8,
      31,
      32,
      33,
      63,
      64,
      65,
      ...Array.from({ length: 40 }, () => randomInt(1, 300_000)),
    ];
    for (const length of lengths) {
      const data = randomBytes(length);
      const offsetView = randomBytes(length + 5).subarray(5); // a view not at the start of its ArrayBuffer
      expect(packages.checksum(data), `length ${length}`).toBe(native.checksum(data));
      expect(packages.checksum(offsetView), `view of length ${length}`).toBe(native.checksum(offsetView));
    }
    expect(native.checksum(Buffer.alloc(0))).toBe(0x51d8e999); // XXH64("") = 0xef46db3751d8e999
  });
});

const PAIRS = [
  { writer: "native", reader: "packages" },
  { writer: "packages", reader: "native" },
] as const satisfies { writer: CodecBackendName; reader: CodecBackendName }[];
const CROSS_LEVELS: { algorithm: CompressionAlgorithm; level: number }[] = [
  { algorithm: "zstd", level: 1 },
  { algorithm: "zstd", level: 19 },
  { algorithm: "lz4", level: 0 },
  { algorithm: "lz4", level: 9 },
];
const CROSS_CASES = PAIRS.flatMap((pair) => CROSS_LEVELS.map((codec) => ({ ...pair, ...codec })));

describe.each(CROSS_CASES)("written by $writer ($algorithm $level), read by $reader", (cross) => {
  it.each(INPUTS)("$name decompresses byte-exact", async (input) => {
    const base = path.join(
      directory,
      `${cross.writer}-${cross.algorithm}-${cross.level}-${input.name.replace(/\W+/g, "_")}`,
    );
    const expected = await input.write(`${base}.raw`);
    const options = { algorithm: cross.algorithm, level: cross.level, chunkSize: TEST_CHUNK_SIZE };
    const written = await compressFile(`${base}.raw`, `${base}.cmp`, { ...options, backend: cross.writer });
    expect(written.backend).toBe(cross.writer);

    await decompressFile(`${base}.cmp`, `${base}.out`, { backend: cross.reader });
    expect((await readFile(`${base}.out`)).equals(expected)).toBe(true);
  });
});

describe("same input, both backends", () => {
  it("find the same zero chunks (native skips holes, packages reads and compares)", async () => {
    const input = INPUTS.find((candidate) => candidate.sparse)!;
    const source = path.join(directory, "zero-chunks.raw");
    await input.write(source);
    const counts = await Promise.all(
      (["native", "packages"] as const).map(async (backend) => {
        const result = await compressFile(source, `${source}.${backend}`, {
          backend,
          algorithm: "zstd",
          chunkSize: TEST_CHUNK_SIZE,
        });
        return [result.chunkCount, result.zeroChunkCount];
      }),
    );
    expect(counts[1]).toEqual(counts[0]);
    expect(counts[0]![1]).toBeGreaterThan(10);
  });
});

describe("lz4 levels", () => {
  let source: string;
  beforeAll(async () => {
    source = path.join(directory, "lz4-levels.raw");
    await writeFile(source, textBytes(4 * TEST_CHUNK_SIZE));
  });

  const compressAt = (backend: CodecBackendName, level: number) =>
    compressFile(source, `${source}.${backend}.${level}`, {
      backend,
      algorithm: "lz4",
      level,
      chunkSize: TEST_CHUNK_SIZE,
    });

  it("native: levels from 3 up are LZ4HC, smaller than the fast level, and the index records the level", async () => {
    const fast = await compressAt("native", 0);
    const high = await compressAt("native", 9);
    expect(high.compressedBytes).toBeLessThan(fast.compressedBytes);
    expect(high.level).toBe(9);
  });

  it("packages: every level is lz4's fast mode, and the index says so (level 0)", async () => {
    const fast = await compressAt("packages", 0);
    const high = await compressAt("packages", 9);
    expect(high.compressedBytes).toBe(fast.compressedBytes);
    expect(high.level).toBe(0);
    expect((await readFile(`${source}.packages.9`)).equals(await readFile(`${source}.packages.0`))).toBe(true);
  });
});

describe("choosing a backend", () => {
  const messages = (): BackendLog & { lines: string[] } => {
    const lines: string[] = [];
    return {
      lines,
      info: (message) => lines.push(`info ${message}`),
      warn: (message) => lines.push(`warn ${message}`),
    };
  };
  const brokenNative = async (name: CodecBackendName): Promise<CodecBackend> => {
    if (name === "native") throw new Error("codec backend native does not load: the native addon is not built here");
    return loadCodecBackend(name);
  };

  it("auto takes native when the addon loads, with no warning and no fallback", async () => {
    const log = messages();
    const fallbacks: string[] = [];
    const hooks = { onCodecFallback: (reason: string) => fallbacks.push(reason) };
    expect((await resolveCodecBackend("auto", log, loadCodecBackend, hooks)).name).toBe("native");
    expect(log.lines).toEqual(["info codec backend: native"]);
    expect(fallbacks).toEqual([]);
  });

  it("auto falls back to packages when the addon does not load, with one warning and one hook call naming why", async () => {
    const log = messages();
    const fallbacks: string[] = [];
    const hooks = { onCodecFallback: (reason: string) => fallbacks.push(reason) };
    expect((await resolveCodecBackend("auto", log, brokenNative, hooks)).name).toBe("packages");
    expect(fallbacks).toEqual([
      expect.stringMatching(/^codec backend native does not load: the native addon is not built/),
    ]);
    expect(log.lines).toHaveLength(1);
    expect(log.lines[0]).toMatch(/^warn codec backend native does not load: .*using the packages codec backend/);
  });

  it("an explicit choice that does not load fails instead of falling back", async () => {
    await expect(resolveCodecBackend("native", messages(), brokenNative)).rejects.toThrow(/native does not load/);
  });

  it("auto fails naming both reasons when neither loads", async () => {
    const nothing = async (name: CodecBackendName): Promise<CodecBackend> => {
      throw new Error(`codec backend ${name} does not load: missing`);
    };
    await expect(resolveCodecBackend("auto", messages(), nothing)).rejects.toThrow(
      /no codec backend loads here: codec backend native .*; codec backend packages/,
    );
  });

  it("an explicit packages choice says what it gives up", async () => {
    const log = messages();
    expect((await resolveCodecBackend("packages", log)).name).toBe("packages");
    expect(log.lines[0]).toMatch(/^info codec backend: packages \(.*every lz4 level compresses in lz4's fast mode/);
  });
});
