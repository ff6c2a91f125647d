// decompressFile: chunks decoded in parallel, each checked against its seek table checksum.
import { type FileHandle, open } from "node:fs/promises";
import { type CodecBackend, codecBackend, type FrameCodec } from "./backend.ts";
import { CodecError, ioStep } from "./errors.ts";
import { createTemporaryFile, readExactly, writeFully } from "./files.ts";
import {
  type ChunkEntry,
  type ChunkIndex,
  chunkCountFromFooter,
  decodeTrailer,
  FOOTER_LENGTH,
  trailerLength,
} from "./format.ts";
import { isAllZero } from "./holes.ts";
import { type DecompressOptions, PAGE_SIZE, resolveConcurrency, validateBackendName } from "./options.ts";
import { runWorkers } from "./pipeline.ts";

export interface DecompressResult {
  uncompressedBytes: number;
}

/** Reads and checks the trailer of an open compressed file. */
async function readChunkIndex(handle: FileHandle, backend: CodecBackend): Promise<ChunkIndex> {
  return ioStep("read seek table", async () => {
    const { size } = await handle.stat();
    if (size < FOOTER_LENGTH) chunkCountFromFooter(Buffer.alloc(0), size);
    const footer = Buffer.alloc(FOOTER_LENGTH);
    await readExactly(handle, footer, 0, FOOTER_LENGTH, size - FOOTER_LENGTH);
    const chunkCount = chunkCountFromFooter(footer, size);
    const trailer = Buffer.alloc(trailerLength(chunkCount));
    await readExactly(handle, trailer, 0, trailer.length, size - trailer.length);
    return decodeTrailer(trailer, chunkCount, size, backend.checksum);
  });
}

function describeChunk(chunkNumber: number, chunk: ChunkEntry): string {
  return `chunk ${chunkNumber} (bytes ${chunk.offset}–${chunk.offset + chunk.length - 1})`;
}

/**
 * Decodes one chunk and checks its size and checksum. Zero chunks are checked too: their frame must match one
 * already verified (`verifiedZeroFrames`) or decode to zeros.
 */
interface ChunkScratch {
  frame: Buffer;
  output: Buffer;
}

class ChunkReader {
  private readonly codec: FrameCodec;
  private readonly verifiedZeroFrames = new Map<number, Buffer>();

  constructor(
    private readonly handle: FileHandle,
    private readonly index: ChunkIndex,
    backend: CodecBackend,
  ) {
    this.codec = backend.frames[index.algorithm];
  }

  /** Buffers one reader at a time can reuse for `read`. */
  scratch(): ChunkScratch {
    const { chunkSize } = this.index;
    return { frame: Buffer.allocUnsafe(this.codec.outputBound(chunkSize)), output: Buffer.allocUnsafe(chunkSize) };
  }

  /** The chunk's bytes (a view of `scratch.output`), or `undefined` for a zero chunk (the caller knows they are zeros). */
  async read(chunkNumber: number, scratch: ChunkScratch): Promise<Buffer | undefined> {
    const chunk = this.index.chunks[chunkNumber]!;
    const frame =
      chunk.frameLength <= scratch.frame.length
        ? scratch.frame.subarray(0, chunk.frameLength)
        : Buffer.allocUnsafe(chunk.frameLength);
    const output = scratch.output;
    await ioStep(`read compressed ${describeChunk(chunkNumber, chunk)}`, () =>
      readExactly(this.handle, frame, 0, frame.length, chunk.frameOffset),
    );
    if (chunk.zero && this.verifiedZeroFrames.get(chunk.length)?.equals(frame)) return undefined;
    const data = await this.decode(chunkNumber, chunk, frame, output.subarray(0, chunk.length));
    if (chunk.zero) {
      if (!isAllZero(data)) this.fail(chunkNumber, chunk, "marked zero but holds data");
      this.verifiedZeroFrames.set(chunk.length, Buffer.from(frame));
      return undefined;
    }
    return data;
  }

  private async decode(chunkNumber: number, chunk: ChunkEntry, frame: Buffer, output: Buffer): Promise<Buffer> {
    const data = await this.codec
      .decompress(frame, output)
      .catch((error: unknown) =>
        this.fail(chunkNumber, chunk, `frame does not decode (${(error as Error).message})`, error),
      );
    if (data.bytes.length !== chunk.length) {
      this.fail(chunkNumber, chunk, `decodes to ${data.bytes.length} bytes instead of ${chunk.length}`);
    }
    if (data.checksum !== chunk.checksum) this.fail(chunkNumber, chunk, "checksum mismatch");
    return data.bytes;
  }

  private fail(chunkNumber: number, chunk: ChunkEntry, problem: string, cause?: unknown): never {
    throw new CodecError("corrupt", `compressed ${describeChunk(chunkNumber, chunk)} is corrupt: ${problem}`, {
      cause,
      chunk: chunkNumber,
    });
  }
}

const PAGE = Buffer.alloc(PAGE_SIZE);

function isZeroPage(data: Buffer, start: number): boolean {
  return data.subarray(start, start + PAGE_SIZE).equals(PAGE.subarray(0, Math.min(PAGE_SIZE, data.length - start)));
}

/** Writes the chunk's runs of non-zero pages only: its zero pages stay holes, as `zstd -d` leaves them. */
async function writeSparsely(handle: FileHandle, data: Buffer, position: number): Promise<void> {
  let runStart = -1;
  for (let page = 0; ; page += PAGE_SIZE) {
    const atEnd = page >= data.length;
    const isData = !atEnd && !isZeroPage(data, page);
    if (isData && runStart < 0) runStart = page;
    if (!isData && runStart >= 0) {
      await writeFully(handle, data.subarray(runStart, page), position + runStart);
      runStart = -1;
    }
    if (atEnd) return;
  }
}

/** What a compressed file declares in its (checked) trailer, read before anything is decoded from it. */
export interface CompressedFileHeader {
  uncompressedSize: number;
  chunkSize: number;
}

export async function readCompressedHeader(file: string): Promise<CompressedFileHeader> {
  const backend = await codecBackend();
  const handle = await ioStep("open compressed file", () => open(file, "r"));
  try {
    const { uncompressedSize, chunkSize } = await readChunkIndex(handle, backend);
    return { uncompressedSize, chunkSize };
  } finally {
    await handle.close();
  }
}

/** Decompresses into a sparse file: zero chunks and zero pages stay holes; every chunk is verified before it is written. */
export async function decompressFile(
  sourcePath: string,
  destinationPath: string,
  options: DecompressOptions = {},
): Promise<DecompressResult> {
  const concurrency = resolveConcurrency(options.concurrency);
  const backend = await codecBackend(validateBackendName(options.backend));
  options.signal?.throwIfAborted();
  const source = await ioStep("open compressed file", () => open(sourcePath, "r"));
  try {
    const index = await readChunkIndex(source, backend);
    const reader = new ChunkReader(source, index, backend);
    const output = await createTemporaryFile(destinationPath, "decompressed");
    try {
      await ioStep("size decompressed file", () => output.handle.truncate(index.uncompressedSize));
      let done = 0;
      const scratches: ChunkScratch[] = [];
      await runWorkers(
        index.chunks.length,
        concurrency,
        async (chunkNumber) => {
          const scratch = scratches.pop() ?? reader.scratch();
          const data = await reader.read(chunkNumber, scratch);
          const chunk = index.chunks[chunkNumber]!;
          if (data) await ioStep("write decompressed file", () => writeSparsely(output.handle, data, chunk.offset));
          scratches.push(scratch);
          done += chunk.length;
          options.onProgress?.(done, index.uncompressedSize);
        },
        options.signal,
      );
      await output.commit();
    } catch (error) {
      await output.discard();
      throw error;
    }
    return { uncompressedBytes: index.uncompressedSize };
  } finally {
    await source.close();
  }
}
