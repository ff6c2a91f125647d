// Loads the codec's native addon (shared/codec/native): lseek SEEK_DATA/SEEK_HOLE, XXH64, zstd and LZ4.
import { createRequire } from "node:module";

interface CodecNative {
  /** Next data offset at or after `offset`, or -1 when only a hole remains. */
  seekData(fd: number, offset: number): number;
  /** Next hole offset at or after `offset` (end of file counts as a hole), or -1 past the end. */
  seekHole(fd: number, offset: number): number;
  /** Low 32 bits of XXH64 with seed 0: the zstd seekable format's frame checksum. */
  xxh64Low32(data: Uint8Array): number;
  zstdCompress(input: Uint8Array, output: Uint8Array, level: number, detectZero: boolean, done: NativeCallback): void;
  zstdDecompress(frame: Uint8Array, output: Uint8Array, level: number, detectZero: boolean, done: NativeCallback): void;
  zstdCompressBound(length: number): number;
  /** LZ4 frame through liblz4's frame API: level 0-2 fast (as `lz4 -1`), 3 and up LZ4HC. */
  lz4Compress(input: Uint8Array, output: Uint8Array, level: number, detectZero: boolean, done: NativeCallback): void;
  lz4Decompress(frame: Uint8Array, output: Uint8Array, level: number, detectZero: boolean, done: NativeCallback): void;
  lz4CompressBound(length: number): number;
  /** Full XXH64 with seed 0. */
  xxh64(data: Uint8Array): bigint;
  /** One raw LZ4 block (no frame): level 0-2 fast, 3 and up LZ4HC at that level. */
  lz4BlockCompress(
    input: Uint8Array,
    output: Uint8Array,
    level: number,
    detectZero: boolean,
    done: NativeCallback,
  ): void;
  lz4BlockCompressBound(length: number): number;
}

/** `zero`: the input was all zero and was not compressed. `checksum`: low 32 bits of XXH64 of the uncompressed bytes. */
type NativeCallback = (error: Error | null, bytesWritten: number, checksum: number, zero: boolean) => void;

function loadNative(): CodecNative {
  const require = createRequire(import.meta.url);
  try {
    return require("./native/build/Release/snapfleet_codec.node") as CodecNative;
  } catch (error) {
    throw new Error("codec native addon is not built: run `node scripts/install-codec-native.mjs`", {
      cause: error,
    });
  }
}

export const native = loadNative();
