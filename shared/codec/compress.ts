// compressFile: a file → chunked, seekable frames, streamed in parallel with a bounded number of chunks in flight.
import { type FileHandle, open } from "node:fs/promises";
import { type CodecBackend, codecBackend, type FrameCodec } from "./backend.ts";
import { CodecError, ioStep } from "./errors.ts";
import { createTemporaryFile, readExactly, writeFully } from "./files.ts";
import { type ChunkEntry, encodeTrailer } from "./format.ts";
import { type DataExtent, ExtentCursor } from "./holes.ts";
import {
  type CodecBackendName,
  type CompressOptions,
  type ResolvedCompressOptions,
  validateCompressOptions,
} from "./options.ts";
import { runInOrder, Semaphore } from "./pipeline.ts";

export interface CompressResult {
  uncompressedBytes: number;
  compressedBytes: number;
  chunkCount: number;
  zeroChunkCount: number;
  backend: CodecBackendName;
  /** The level the chunks were compressed at, as the file's index records it (see LZ4_LEVELS). */
  level: number;
}

interface ChunkBuffers {
  input: Buffer;
  output: Buffer;
}

interface CompressedChunk {
  frame: Buffer;
  length: number;
  checksum: number;
  zero: boolean;
  /** Buffers to reuse once the frame is written. */
  slot?: ChunkBuffers;
}

/** Precomputed frame and checksum of an all-zero chunk, per chunk length (only the last chunk differs). */
class ZeroFrames {
  private readonly byLength = new Map<number, Promise<{ frame: Buffer; checksum: number }>>();

  constructor(
    private readonly codec: FrameCodec,
    private readonly level: number,
  ) {}

  get(length: number): Promise<{ frame: Buffer; checksum: number }> {
    let zeroFrame = this.byLength.get(length);
    if (!zeroFrame) {
      zeroFrame = this.codec
        .compress(Buffer.alloc(length), this.level, Buffer.allocUnsafe(this.codec.outputBound(length)), false)
        .then(({ bytes, checksum }) => ({ frame: Buffer.from(bytes), checksum }));
      this.byLength.set(length, zeroFrame);
    }
    return zeroFrame;
  }
}

/** Compresses `sourcePath` into `destinationPath` (written to a temporary file, fsynced, renamed into place). */
export async function compressFile(
  sourcePath: string,
  destinationPath: string,
  options: CompressOptions,
): Promise<CompressResult> {
  const settings = validateCompressOptions(options);
  const backend = await codecBackend(settings.backend);
  options.signal?.throwIfAborted();
  const source = await ioStep("open source file", () => open(sourcePath, "r"));
  try {
    const { size } = await ioStep("stat source file", () => source.stat());
    const extents = await ioStep("map source file holes", async () => backend.findDataExtents(source.fd, size));
    const output = await createTemporaryFile(destinationPath, "compressed");
    try {
      const result = await writeChunks(backend, source, output.handle, size, extents, settings, options);
      await output.commit();
      return result;
    } catch (error) {
      await output.discard();
      throw error;
    }
  } finally {
    await source.close();
  }
}

async function writeChunks(
  backend: CodecBackend,
  source: FileHandle,
  output: FileHandle,
  size: number,
  extents: DataExtent[],
  settings: ResolvedCompressOptions,
  options: CompressOptions,
): Promise<CompressResult> {
  const { algorithm, level, chunkSize, concurrency } = settings;
  const codec = backend.frames[algorithm];
  const zeroFrames = new ZeroFrames(codec, level);
  const cursor = new ExtentCursor(extents);
  const compressing = new Semaphore(concurrency);
  // Reads run ahead of compression by one chunk per worker; each chunk in flight holds one slot of buffers.
  const window = concurrency * 2;
  const slots: ChunkBuffers[] = [];
  const takeSlot = (): ChunkBuffers =>
    slots.pop() ?? { input: Buffer.allocUnsafe(chunkSize), output: Buffer.allocUnsafe(codec.outputBound(chunkSize)) };
  const chunkCount = Math.ceil(size / chunkSize);
  const entries: ChunkEntry[] = [];
  let written = 0;

  const produce = async (chunkNumber: number): Promise<CompressedChunk> => {
    const offset = chunkNumber * chunkSize;
    const length = Math.min(chunkSize, size - offset);
    const dataParts = cursor.dataWithin(offset, offset + length);
    if (dataParts.length === 0) return { ...(await zeroFrames.get(length)), length, zero: true };
    const slot = takeSlot();
    try {
      const chunk = slot.input.subarray(0, length);
      await readChunk(source, chunk, offset, dataParts);
      const frame = await compressing.run(() => codec.compress(chunk, level, slot.output, true));
      if (frame.zero) {
        slots.push(slot);
        return { ...(await zeroFrames.get(length)), length, zero: true };
      }
      return { frame: frame.bytes, length, checksum: frame.checksum, zero: false, slot };
    } catch (error) {
      slots.push(slot);
      if (error instanceof CodecError) throw error;
      throw new CodecError("io", `compress chunk ${chunkNumber}: ${(error as Error).message}`, {
        cause: error,
        chunk: chunkNumber,
      });
    }
  };

  const consume = async (chunkNumber: number, chunk: CompressedChunk): Promise<void> => {
    await ioStep("write compressed stream", () => writeFully(output, chunk.frame, written));
    entries.push({
      frameOffset: written,
      frameLength: chunk.frame.length,
      offset: chunkNumber * chunkSize,
      length: chunk.length,
      checksum: chunk.checksum,
      zero: chunk.zero,
    });
    written += chunk.frame.length;
    if (chunk.slot) slots.push(chunk.slot);
    options.onProgress?.(Math.min(size, (chunkNumber + 1) * chunkSize), size);
  };

  await runInOrder(chunkCount, window, produce, consume, options.signal);
  const recordedLevel = backend.effectiveLevel(algorithm, level);
  const trailer = encodeTrailer(
    { algorithm, level: recordedLevel, chunkSize, uncompressedSize: size, chunks: entries },
    backend.checksum,
  );
  await ioStep("write compressed stream", () => writeFully(output, trailer, written));
  if (chunkCount === 0) options.onProgress?.(0, 0);
  return {
    uncompressedBytes: size,
    compressedBytes: written + trailer.length,
    chunkCount,
    zeroChunkCount: entries.filter((entry) => entry.zero).length,
    backend: backend.name,
    level: recordedLevel,
  };
}

/**
 * Reads the chunk's data in one read from its first data byte to its last (a hole between reads back as zeros,
 * cheaply); the parts before and after, holes, are zero-filled without reading them.
 */
async function readChunk(source: FileHandle, chunk: Buffer, offset: number, dataParts: DataExtent[]): Promise<void> {
  const start = dataParts[0]!.start - offset;
  const end = dataParts.at(-1)!.end - offset;
  chunk.fill(0, 0, start);
  chunk.fill(0, end);
  await ioStep("read source file", () => readExactly(source, chunk, start, end - start, offset + start));
}
