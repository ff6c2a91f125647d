// The portable backend: @mongodb-js/zstd and lz4-napi write and read the same standard frames, xxhash-wasm
// computes the same XXH64, so files are identical in format to the native backend's and either reads the other's.
//
// What it gives up (measured in bench/README.md): decoding is several times slower (each package returns a fresh
// buffer per call), holes are not seen (lseek SEEK_DATA is not in Node), so every chunk is read and all-zero
// chunks are found by comparing, and lz4-napi (Rust lz4_flex) has one mode: every lz4 level compresses as lz4's
// fast mode, and the file's index records level 0. The frames are still what `zstd -d` and `lz4 -d` read.
import { createRequire } from "node:module";
import xxhash from "xxhash-wasm";
import type { CodecBackend, FrameCodec, FrameResult } from "./backend.ts";
import { isAllZero, wholeFile } from "./holes.ts";

type ZstdPackage = typeof import("@mongodb-js/zstd");
type Lz4Package = typeof import("lz4-napi");

const EMPTY = Buffer.alloc(0);
/** The seek table has XXH64 per chunk, so lz4's own checksums would only cost time (as in the native backend). */
const LZ4_FRAME_OPTIONS = { contentChecksum: false, blockChecksums: false };
/** The packages' sole lz4 mode, as lz4 levels 0-2. */
const LZ4_FAST_LEVEL = 0;

/** Room for a frame of `length` bytes: zstd's compress bound, which also covers an LZ4 frame of stored blocks. */
function frameBound(length: number): number {
  return length + (length >>> 8) + 1024;
}

function asBuffer(data: Uint8Array): Buffer {
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}

function packageFrameCodec(
  checksum: (data: Uint8Array) => number,
  encode: (chunk: Buffer, level: number) => Promise<Buffer>,
  decode: (frame: Buffer) => Promise<Buffer>,
): FrameCodec {
  return {
    outputBound: frameBound,
    async compress(chunk, level, _output, detectZero): Promise<FrameResult> {
      const sum = checksum(chunk);
      if (detectZero && isAllZero(chunk)) return { bytes: EMPTY, checksum: sum, zero: true };
      return { bytes: await encode(asBuffer(chunk), level), checksum: sum, zero: false };
    },
    async decompress(frame, output): Promise<FrameResult> {
      const bytes = await decode(asBuffer(frame));
      if (bytes.length > output.length) throw new Error(`frame decodes to more than ${output.length} bytes`);
      return { bytes, checksum: checksum(bytes), zero: false };
    },
  };
}

/** Rejects when a package's binary is missing here (scripts/install-zstd.mjs builds @mongodb-js/zstd's). */
export async function createPackagesBackend(): Promise<CodecBackend> {
  const require = createRequire(import.meta.url);
  const zstd = require("@mongodb-js/zstd") as ZstdPackage;
  const lz4 = require("lz4-napi") as Lz4Package;
  const { h64Raw } = await xxhash();
  const checksum = (data: Uint8Array) => Number(h64Raw(data, 0n) & 0xffffffffn);
  return {
    name: "packages",
    frames: {
      zstd: packageFrameCodec(checksum, zstd.compress, zstd.decompress),
      lz4: packageFrameCodec(checksum, (chunk) => lz4.compressFrame(chunk, LZ4_FRAME_OPTIONS), lz4.decompressFrame),
    },
    checksum,
    findDataExtents: (_fd, size) => wholeFile(size),
    effectiveLevel: (algorithm, level) => (algorithm === "lz4" ? LZ4_FAST_LEVEL : level),
  };
}
