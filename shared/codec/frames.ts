// One standard frame per chunk, zstd or LZ4, compressed from and decoded into buffers the caller owns and reuses.
//
// Both go through our addon (shared/codec/native), linked to Debian's libzstd and liblz4, rather than
// @mongodb-js/zstd and lz4-napi. Measured on the 256 MiB stand-in (bench/README.md): @mongodb-js/zstd copies every
// input and output on the main thread and decodes through a growing 128 KiB stream buffer (about 270 MB/s a
// core); lz4-napi returns a fresh native buffer per chunk that V8 does not count, so RSS climbed past 400 MiB,
// and its lz4_flex has no levels. The frames are the same standard frames `zstd -d` and `lz4 -d` read.
import { native } from "./native.ts";
import type { CompressionAlgorithm } from "./options.ts";

type NativeRun = (
  input: Uint8Array,
  output: Uint8Array,
  level: number,
  done: (error: Error | null, bytesWritten: number) => void,
) => void;

export interface FrameCodec {
  /** Room a frame of a `length`-byte chunk may need in the `output` buffer given to `compress`. */
  outputBound(length: number): number;
  /** The frame, as a view of `output`. */
  compress(chunk: Uint8Array, level: number, output: Buffer): Promise<Buffer>;
  /** The decoded chunk, as a view of `output`; fails if the frame does not fit in it exactly or is damaged. */
  decompress(frame: Uint8Array, output: Buffer): Promise<Buffer>;
}

function runInto(operation: NativeRun, input: Uint8Array, output: Buffer, level: number): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    operation(input, output, level, (error, bytesWritten) =>
      error ? reject(error) : resolve(output.subarray(0, bytesWritten)),
    ),
  );
}

function frameCodec(compress: NativeRun, decompress: NativeRun, bound: (length: number) => number): FrameCodec {
  return {
    outputBound: bound,
    compress: (chunk, level, output) => runInto(compress, chunk, output, level),
    decompress: (frame, output) => runInto(decompress, frame, output, 0),
  };
}

export const FRAME_CODECS: Record<CompressionAlgorithm, FrameCodec> = {
  zstd: frameCodec(native.zstdCompress, native.zstdDecompress, native.zstdCompressBound),
  lz4: frameCodec(native.lz4Compress, native.lz4Decompress, native.lz4CompressBound),
};
