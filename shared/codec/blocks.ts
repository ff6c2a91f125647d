// Single compressed blocks for file-system images (shared/squashfs): a zstd frame or a raw LZ4 block per block,
// the forms squashfs stores, plus the XXH64 checksum images keep of each stored block. Both backends do both.
import { createRequire } from "node:module";
import { type CodecBackend, codecBackend } from "./backend.ts";
import { CodecError } from "./errors.ts";
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
  /**
   * Decodes one stored block into `output` (exactly `output.length` bytes): the read-back check of an image before
   * its raw file goes. Throws CodecError `corrupt` when the block does not decode to exactly that many bytes.
   */
  decompress(algorithm: CompressionAlgorithm, block: Uint8Array, output: Buffer): Promise<Buffer>;
  /** XXH64 (seed 0) of `data`, as 16 hex digits. */
  checksum(data: Uint8Array): string;
}

type Lz4Package = typeof import("lz4-napi");
let lz4Package: Lz4Package | undefined;

/**
 * A raw LZ4 block decoded by lz4-napi (Rust lz4_flex, a decoder independent of the native liblz4 encoder), which
 * reads lz4_flex's `compress_prepend_size` form: the decoded length (u32 LE) ahead of the raw block.
 */
async function decodeLz4Block(block: Uint8Array, length: number): Promise<Buffer> {
  lz4Package ??= createRequire(import.meta.url)("lz4-napi") as Lz4Package;
  const prefixed = Buffer.alloc(4 + block.length);
  prefixed.writeUInt32LE(length, 0);
  prefixed.set(block, 4);
  return lz4Package.uncompress(prefixed);
}

async function decodeBlock(
  backend: CodecBackend,
  algorithm: CompressionAlgorithm,
  block: Uint8Array,
  output: Buffer,
): Promise<Buffer> {
  let decoded: Buffer;
  try {
    decoded =
      algorithm === "zstd"
        ? (await backend.frames.zstd.decompress(block, output)).bytes
        : await decodeLz4Block(block, output.length);
  } catch (error) {
    throw new CodecError("corrupt", `a stored ${algorithm} block does not decode: ${(error as Error).message}`, {
      cause: error,
    });
  }
  if (decoded.length !== output.length) {
    throw new CodecError(
      "corrupt",
      `a stored ${algorithm} block decodes to ${decoded.length} bytes, not ${output.length}`,
    );
  }
  return decoded;
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
    decompress: (algorithm, block, output) => decodeBlock(backend, algorithm, block, output),
    checksum: (data) => backend.xxh64(data).toString(16).padStart(16, "0"),
  };
}
