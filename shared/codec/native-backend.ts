// The fast backend: our addon (shared/codec/native), linked to Debian's libzstd, liblz4 and xxhash.
//
// Chunks are compressed from and decoded into buffers the caller owns and reuses, on the libuv pool, with one
// zstd context per pool thread for levels up to 3; the XXH64 checksum and the all-zero check of each chunk run
// there too, and holes are found with lseek(SEEK_DATA/SEEK_HOLE) without reading them. Measured here on the same
// 2 MiB chunks: 1-3 GB/s decoding, where the packages backend does 0.15-0.25 GB/s (bench/README.md).
import { createRequire } from "node:module";
import type { CodecBackend, FrameCodec, FrameResult } from "./backend.ts";
import { findDataExtents, type HolePuncher } from "./holes.ts";

/** `zero`: the input was all zero and was not compressed. `checksum`: low 32 bits of XXH64 of the uncompressed bytes. */
type NativeCallback = (error: Error | null, bytesWritten: number, checksum: number, zero: boolean) => void;

/** (input, output, level, detectZero, done): level and detectZero are ignored when decoding. */
type NativeRun = (
  input: Uint8Array,
  output: Uint8Array,
  level: number,
  detectZero: boolean,
  done: NativeCallback,
) => void;

interface CodecAddon extends HolePuncher {
  xxh64Low32(data: Uint8Array): number;
  zstdCompress: NativeRun;
  zstdDecompress: NativeRun;
  zstdCompressBound(length: number): number;
  /** LZ4 frame through liblz4's frame API: level 0-2 fast (as `lz4 -1`), 3 and up LZ4HC. */
  lz4Compress: NativeRun;
  lz4Decompress: NativeRun;
  lz4CompressBound(length: number): number;
  /** Full XXH64 with seed 0. */
  xxh64(data: Uint8Array): bigint;
  /** One raw LZ4 block (no frame): level 0-2 fast, 3 and up LZ4HC at that level. */
  lz4BlockCompress: NativeRun;
  lz4BlockCompressBound(length: number): number;
}

function loadAddon(): CodecAddon {
  const require = createRequire(import.meta.url);
  try {
    return require("./native/build/Release/snapfleet_codec.node") as CodecAddon;
  } catch (error) {
    throw new Error(
      `the native addon is not built here (${(error as Error).message.split("\n")[0]}); to build it: ` +
        "install libzstd-dev liblz4-dev libxxhash-dev and a compiler, then `node scripts/install-codec-native.mjs`",
      { cause: error },
    );
  }
}

function runInto(
  operation: NativeRun,
  input: Uint8Array,
  output: Buffer,
  level: number,
  detectZero: boolean,
): Promise<FrameResult> {
  return new Promise((resolve, reject) =>
    operation(input, output, level, detectZero, (error, bytesWritten, checksum, zero) =>
      error ? reject(error) : resolve({ bytes: output.subarray(0, bytesWritten), checksum, zero }),
    ),
  );
}

function frameCodec(compress: NativeRun, decompress: NativeRun, bound: (length: number) => number): FrameCodec {
  return {
    outputBound: bound,
    compress: (chunk, level, output, detectZero) => runInto(compress, chunk, output, level, detectZero),
    decompress: (frame, output) => runInto(decompress, frame, output, 0, false),
  };
}

/** The addon's hole calls (lseek and fallocate); throws when the addon is not built or does not load here. */
export function loadHolePuncher(): HolePuncher {
  return loadAddon();
}

/** Throws when the addon is not built or does not load on this machine. */
export function createNativeBackend(): CodecBackend {
  const addon = loadAddon();
  return {
    name: "native",
    frames: {
      zstd: frameCodec(addon.zstdCompress, addon.zstdDecompress, addon.zstdCompressBound),
      lz4: frameCodec(addon.lz4Compress, addon.lz4Decompress, addon.lz4CompressBound),
    },
    lz4Block: {
      outputBound: addon.lz4BlockCompressBound,
      compress: (block, level, output) => runInto(addon.lz4BlockCompress, block, output, level, true),
    },
    checksum: (data) => addon.xxh64Low32(data),
    xxh64: (data) => addon.xxh64(data),
    findDataExtents: (fd, size) => findDataExtents(addon, fd, size),
    effectiveLevel: (_algorithm, level) => level,
  };
}
