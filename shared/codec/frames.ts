// One standard frame per chunk: zstd frames from libzstd (our addon), LZ4 frames from lz4-napi.
//
// zstd goes through shared/codec/native rather than @mongodb-js/zstd: both call the same system libzstd here, but
// that binding copies every input and output on the main thread and decodes through a growing 128 KiB stream
// buffer (about 270 MB/s a core, measured), while ours compresses from and decodes into the caller's buffers with
// one reused context per pool thread.
import { compressFrame as lz4CompressFrame, decompressFrame as lz4DecompressFrame } from "lz4-napi";
import { native } from "./native.ts";
import type { CompressionAlgorithm } from "./options.ts";

export interface FrameCodec {
  /** Room a frame of a `length`-byte chunk may need in the `output` buffer given to `compress`. */
  outputBound(length: number): number;
  /** The frame: a view of `output` or a new buffer. */
  compress(chunk: Buffer, level: number, output: Buffer): Promise<Buffer>;
  /** The decoded chunk: a view of `output` (sized to the expected length) or a new buffer. */
  decompress(frame: Buffer, output: Buffer): Promise<Buffer>;
}

function nativeCall(start: (done: (error: Error | null, bytesWritten: number) => void) => void): Promise<number> {
  return new Promise((resolve, reject) =>
    start((error, bytesWritten) => (error ? reject(error) : resolve(bytesWritten))),
  );
}

export const FRAME_CODECS: Record<CompressionAlgorithm, FrameCodec> = {
  zstd: {
    outputBound: (length) => native.zstdCompressBound(length),
    compress: async (chunk, level, output) =>
      output.subarray(0, await nativeCall((done) => native.zstdCompress(chunk, level, output, done))),
    decompress: async (frame, output) =>
      output.subarray(0, await nativeCall((done) => native.zstdDecompress(frame, output, done))),
  },
  lz4: {
    outputBound: () => 0,
    // The level is not passed on: lz4_flex has a single speed (see LZ4_LEVELS). No lz4 content checksum:
    // the seek table already holds an XXH64 checksum of every chunk.
    compress: (chunk) => lz4CompressFrame(chunk),
    decompress: (frame) => lz4DecompressFrame(frame),
  },
};
