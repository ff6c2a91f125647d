// Single compressed blocks for file-system images (shared/squashfs): a zstd frame or a raw LZ4 block per block,
// the forms squashfs stores, plus the XXH64 checksum images keep of each stored block. Both backends do both.
import { type CodecBackend, codecBackend } from "./backend.ts";
import type { CodecBackendName, CompressionAlgorithm } from "./options.ts";

export interface CompressedBlock {
  /** A view of the output buffer (or a buffer of the backend's own); empty when `zero`. */
  bytes: Buffer;
  /** The input was all zero and was not compressed. */
  zero: boolean;
}

export interface BlockCodec {
  backend: CodecBackend;
  /** Room `compress` may need for a block of `length` bytes. */
  outputBound(algorithm: CompressionAlgorithm, length: number): number;
  /**
   * zstd → one standard zstd frame at `level`; lz4 → one raw LZ4 block (native: level 0-2 fast, 3-9 LZ4HC at that
   * level; packages: always fast). An all-zero block is reported, not compressed.
   */
  compress(algorithm: CompressionAlgorithm, level: number, block: Uint8Array, output: Buffer): Promise<CompressedBlock>;
  /** XXH64 (seed 0) of `data`, as 16 hex digits. */
  checksum(data: Uint8Array): string;
}

/** The block codec of the backend named, else of the process's selected backend. */
export async function blockCodec(name?: CodecBackendName): Promise<BlockCodec> {
  const backend = await codecBackend(name);
  return {
    backend,
    outputBound: (algorithm, length) =>
      algorithm === "zstd" ? backend.frames.zstd.outputBound(length) : backend.lz4Block.outputBound(length),
    compress: (algorithm, level, block, output) =>
      algorithm === "zstd"
        ? backend.frames.zstd.compress(block, level, output, true)
        : backend.lz4Block.compress(block, level, output),
    checksum: (data) => backend.xxh64(data).toString(16).padStart(16, "0"),
  };
}
