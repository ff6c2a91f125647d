// One standard frame per chunk, zstd or LZ4, compressed from and decoded into buffers the caller owns and reuses.
//
// Both go through our addon (shared/codec/native), linked to Debian's libzstd and liblz4, rather than
// @mongodb-js/zstd and lz4-napi. Measured on the 256 MiB stand-in (bench/README.md): @mongodb-js/zstd copies every
// input and output on the main thread and decodes through a growing 128 KiB stream buffer (about 270 MB/s a
// core); lz4-napi returns a fresh native buffer per chunk that V8 does not count, so RSS climbed past 400 MiB,
// and its lz4_flex has no levels. The frames are the same standard frames `zstd -d` and `lz4 -d` read.
import { native } from "./native.ts";
import type { CompressionAlgorithm } from "./options.ts";

type NativeRun = typeof native.zstdCompress;

/** `bytes` is a view of the output buffer; `checksum` covers the uncompressed bytes. */
export interface FrameResult {
  bytes: Buffer;
  checksum: number;
  /** Compressing only: the chunk was all zero, so nothing was compressed (`bytes` is empty). */
  zero: boolean;
}

export interface FrameCodec {
  /** Room a frame of a `length`-byte chunk may need in the `output` buffer given to `compress`. */
  outputBound(length: number): number;
  /** With `detectZero`, an all-zero chunk is reported (`zero`) instead of compressed. */
  compress(chunk: Uint8Array, level: number, output: Buffer, detectZero: boolean): Promise<FrameResult>;
  /** Fails if the frame is damaged or does not fit in `output`. */
  decompress(frame: Uint8Array, output: Buffer): Promise<FrameResult>;
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

export const FRAME_CODECS: Record<CompressionAlgorithm, FrameCodec> = {
  zstd: frameCodec(native.zstdCompress, native.zstdDecompress, native.zstdCompressBound),
  lz4: frameCodec(native.lz4Compress, native.lz4Decompress, native.lz4CompressBound),
};
