// writeSquashfsImage: one file → a squashfs image holding it, compressed by our codec, with a checksum sidecar.
// The kernel mounts the image and decompresses a block only when a reader (a guest's page fault) touches it;
// `unsquashfs` reads it too, and each zstd data block is a plain zstd frame.
import { randomBytes } from "node:crypto";
import { type FileHandle, open, rename, rm } from "node:fs/promises";
import path from "node:path";
import {
  type BlockCodec,
  blockCodec,
  type CodecBackendName,
  type CompressionAlgorithm,
  ExtentCursor,
  ioStep,
  readExactly,
  resolveCompressionLevel,
  runInOrder,
  writeFully,
} from "../codec/index.ts";
import { fsyncPath } from "../files.ts";
import { checksumsFile, type ImageChecksums, writeChecksums } from "./checksums.ts";
import {
  BLOCK_SIZE,
  BLOCK_UNCOMPRESSED,
  compressorOptions,
  encodeTables,
  IMAGE_ALIGNMENT,
  SUPERBLOCK_BYTES,
} from "./format.ts";

export interface SquashfsWriteOptions {
  algorithm: CompressionAlgorithm;
  level?: number;
  /** Name of the one file inside the image (default: the source's base name). */
  name?: string;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  /** Blocks compressed at once (default 3). */
  concurrency?: number;
  /** The codec backend (default: the process's selected one). */
  backend?: CodecBackendName;
}

export interface SquashfsWriteResult {
  /** The image file's size (padded), i.e. what the compressed copy costs. */
  imageBytes: number;
  uncompressedBytes: number;
  blockCount: number;
  sparseBlockCount: number;
}

interface StoredBlock {
  bytes: Buffer;
  /** The block-list entry. */
  size: number;
  slot?: Buffer[];
}

const DEFAULT_CONCURRENCY = 3;

/**
 * Writes `destinationPath` (temporary file, fsync, rename) and its checksum sidecar (`<destination>.sums`, written
 * first, so an image in place always has its sums). Holes and all-zero blocks become sparse blocks.
 */
export async function writeSquashfsImage(
  sourcePath: string,
  destinationPath: string,
  options: SquashfsWriteOptions,
): Promise<SquashfsWriteResult> {
  const codec = await blockCodec(options.backend);
  const level = codec.backend.effectiveLevel(
    options.algorithm,
    resolveCompressionLevel(options.algorithm, options.level),
  );
  options.signal?.throwIfAborted();
  const source = await ioStep("open source file", () => open(sourcePath, "r"));
  const temporary = path.join(
    path.dirname(destinationPath),
    `.${path.basename(destinationPath)}.${randomBytes(6).toString("hex")}.tmp`,
  );
  try {
    const { size, mtimeMs } = await ioStep("stat source file", () => source.stat());
    const output = await ioStep("create image file", () => open(temporary, "wx", 0o644));
    try {
      const written = await writeImage(source, output, {
        ...options,
        codec,
        level,
        size,
        mtime: Math.floor(mtimeMs / 1000),
        name: options.name ?? path.basename(sourcePath),
      });
      await ioStep("flush image file", () => output.sync());
      await output.close();
      await ioStep("write image checksums", () => writeChecksums(checksumsFile(destinationPath), written.checksums));
      await ioStep("rename image file into place", () => rename(temporary, destinationPath));
      await ioStep("flush image directory", () => fsyncPath(path.dirname(destinationPath)));
      return written.result;
    } catch (error) {
      await output.close().catch(() => {});
      throw error;
    }
  } catch (error) {
    await rm(temporary, { force: true });
    throw error;
  } finally {
    await source.close();
  }
}

interface ImageJob {
  codec: BlockCodec;
  algorithm: CompressionAlgorithm;
  level: number;
  size: number;
  mtime: number;
  name: string;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  concurrency?: number;
}

async function writeImage(
  source: FileHandle,
  output: FileHandle,
  job: ImageJob,
): Promise<{ result: SquashfsWriteResult; checksums: ImageChecksums }> {
  const options = compressorOptions(job.algorithm, job.level);
  const blocksStart = SUPERBLOCK_BYTES + options.length;
  const checksums: ImageChecksums = { version: 1, pieces: [] };
  let position = blocksStart;
  const blockSizes: number[] = [];
  let sparseBytes = 0;
  const blockCount = Math.ceil(job.size / BLOCK_SIZE);
  const cursor = new ExtentCursor(
    await ioStep("map source file holes", async () => job.codec.backend.findDataExtents(source.fd, job.size)),
  );
  const concurrency = job.concurrency ?? DEFAULT_CONCURRENCY;
  const slots: Buffer[][] = [];
  const takeSlot = () =>
    slots.pop() ?? [
      Buffer.allocUnsafe(BLOCK_SIZE),
      Buffer.allocUnsafe(job.codec.outputBound(job.algorithm, BLOCK_SIZE)),
    ];

  const produce = async (block: number): Promise<StoredBlock> => {
    const offset = block * BLOCK_SIZE;
    const length = Math.min(BLOCK_SIZE, job.size - offset);
    const parts = cursor.dataWithin(offset, offset + length);
    if (parts.length === 0) return { bytes: Buffer.alloc(0), size: 0 };
    const slot = takeSlot();
    const input = slot[0]!.subarray(0, length);
    input.fill(0);
    for (const part of parts) {
      await ioStep("read source file", () =>
        readExactly(source, input, part.start - offset, part.end - part.start, part.start),
      );
    }
    const compressed = await job.codec.compress(job.algorithm, job.level, input, slot[1]!);
    if (compressed.zero) {
      slots.push(slot);
      return { bytes: Buffer.alloc(0), size: 0 };
    }
    // A block that does not shrink is stored as it is, flagged uncompressed.
    if (compressed.bytes.length >= length) return { bytes: input, size: length | BLOCK_UNCOMPRESSED, slot };
    return { bytes: compressed.bytes, size: compressed.bytes.length, slot };
  };

  const consume = async (block: number, stored: StoredBlock): Promise<void> => {
    blockSizes.push(stored.size);
    if (stored.size === 0) {
      sparseBytes += Math.min(BLOCK_SIZE, job.size - block * BLOCK_SIZE);
    } else {
      await ioStep("write image file", () => writeFully(output, stored.bytes, position));
      checksums.pieces.push([position, stored.bytes.length, job.codec.checksum(stored.bytes)]);
      position += stored.bytes.length;
    }
    if (stored.slot) slots.push(stored.slot);
    job.onProgress?.(Math.min(job.size, (block + 1) * BLOCK_SIZE), job.size);
  };

  await runInOrder(blockCount, concurrency * 2, produce, consume, job.signal);
  const file = { name: job.name, size: job.size, mtime: job.mtime, blocksStart, blockSizes, sparseBytes };
  const { tables, superblock, bytesUsed } = encodeTables(file, job.algorithm, true, position);
  const imageBytes = Math.ceil(bytesUsed / IMAGE_ALIGNMENT) * IMAGE_ALIGNMENT;
  const tail = Buffer.alloc(imageBytes - position);
  tables.copy(tail);
  const head = Buffer.concat([superblock, options]);
  await ioStep("write image file", () => writeFully(output, tail, position));
  await ioStep("write image file", () => writeFully(output, head, 0));
  checksums.pieces.unshift([0, head.length, job.codec.checksum(head)]);
  checksums.pieces.push([position, tail.length, job.codec.checksum(tail)]);
  return {
    result: {
      imageBytes,
      uncompressedBytes: job.size,
      blockCount,
      sparseBlockCount: blockSizes.filter((size) => size === 0).length,
    },
    checksums,
  };
}
