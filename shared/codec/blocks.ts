// Single compressed blocks for file-system images (shared/squashfs): a zstd frame or a raw LZ4 block per block,
// the forms squashfs stores, plus the XXH64 checksum images keep of each stored block.
import { FRAME_CODECS } from "./frames.ts";
import { native } from "./native.ts";
import type { CompressionAlgorithm } from "./options.ts";

export interface CompressedBlock {
  /** A view of the output buffer; empty when `zero`. */
  bytes: Buffer;
  /** The input was all zero and was not compressed. */
  zero: boolean;
}

/** Room `compressBlock` may need for a block of `length` bytes. */
export function blockOutputBound(algorithm: CompressionAlgorithm, length: number): number {
  return algorithm === "zstd" ? native.zstdCompressBound(length) : native.lz4BlockCompressBound(length);
}

/**
 * Compresses one block on the libuv pool: zstd → one standard zstd frame at `level`; lz4 → one raw LZ4 block
 * (level 0-2 fast, 3-9 LZ4HC at that level). An all-zero block is reported, not compressed.
 */
export function compressBlock(
  algorithm: CompressionAlgorithm,
  level: number,
  block: Uint8Array,
  output: Buffer,
): Promise<CompressedBlock> {
  if (algorithm === "zstd") return FRAME_CODECS.zstd.compress(block, level, output, true);
  return new Promise((resolve, reject) =>
    native.lz4BlockCompress(block, output, level, true, (error, bytesWritten, _checksum, zero) =>
      error ? reject(error) : resolve({ bytes: output.subarray(0, bytesWritten), zero }),
    ),
  );
}

/** XXH64 (seed 0) of `data`, as 16 hex digits. */
export function blockChecksum(data: Uint8Array): string {
  return native.xxh64(data).toString(16).padStart(16, "0");
}
