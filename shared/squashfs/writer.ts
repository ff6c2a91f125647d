// writeSquashfsImage: one file → a squashfs image holding it, compressed by our codec, with a checksum sidecar.
// The kernel mounts the image and decompresses a block only when a reader (a guest's page fault) touches it;
// `unsquashfs` reads it too, and each zstd data block is a plain zstd frame.
import { type FileHandle, open } from "node:fs/promises";
import path from "node:path";
import {
  type BlockCodec,
  blockCodec,
  type CodecBackendName,
  CodecError,
  type CompressionAlgorithm,
  ExtentCursor,
  ioStep,
  readExactly,
  resolveCompressionLevel,
  runInOrder,
  writeFully,
} from "../codec/index.ts";
import { createDurableFile } from "../files.ts";
import { checksumsFile, type ImageChecksums, writeChecksums } from "./checksums.ts";
import {
  BLOCK_SIZE,
  BLOCK_UNCOMPRESSED,
  compressorOptions,
  encodeTables,
  IMAGE_ALIGNMENT,
  SUPERBLOCK_BYTES,
} from "./format.ts";
import { decodeImageBlocks } from "./reader.ts";

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
  /** The block codec itself (default: the backend's); tests hand in a faulty one to see the read-back catch it. */
  codec?: BlockCodec;
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
 * Writes `destinationPath` durably (shared/files.ts) and its checksum sidecar (`<destination>.sums`, written first,
 * so an image in place always has its sums). Holes and all-zero blocks become sparse blocks. Before the image is put
 * in place it is read back and decoded, and every block must hash as the raw block it was made from did: the
 * sidecar only vouches for the stored bytes, so this is what lets a caller delete the raw file afterwards.
 */
export async function writeSquashfsImage(
  sourcePath: string,
  destinationPath: string,
  options: SquashfsWriteOptions,
): Promise<SquashfsWriteResult> {
  const codec = options.codec ?? (await blockCodec(options.backend));
  const level = codec.backend.effectiveLevel(
    options.algorithm,
    resolveCompressionLevel(options.algorithm, options.level),
  );
  options.signal?.throwIfAborted();
  const source = await ioStep("open source file", () => open(sourcePath, "r"));
  try {
    const { size, mtimeMs } = await ioStep("stat source file", () => source.stat());
    const output = await ioStep("create image file", () => createDurableFile(destinationPath));
    try {
      const written = await writeImage(source, output.handle, {
        ...options,
        codec,
        level,
        size,
        mtime: Math.floor(mtimeMs / 1000),
        name: options.name ?? path.basename(sourcePath),
      });
      await verifyReadBack(output.handle, codec, size, written.rawChecksums);
      await ioStep("write image checksums", () => writeChecksums(checksumsFile(destinationPath), written.checksums));
      await ioStep("put image file in place", () => output.commit());
      return written.result;
    } catch (error) {
      await output.discard();
      throw error;
    }
  } finally {
    await source.close();
  }
}

/**
 * Decodes the written image and compares each block with the raw block's checksum taken as it was read (null: all
 * zero). Throws CodecError `corrupt` naming the first block that differs.
 */
async function verifyReadBack(
  image: FileHandle,
  codec: BlockCodec,
  size: number,
  rawChecksums: Array<string | null>,
): Promise<void> {
  const zeroChecksums = new Map<number, string>();
  const zeroChecksum = (length: number) => {
    const known = zeroChecksums.get(length) ?? codec.checksum(Buffer.alloc(length));
    zeroChecksums.set(length, known);
    return known;
  };
  const mismatch = (index: number) =>
    new CodecError("corrupt", `image read back: block ${index} does not decode to the raw bytes it was made from`, {
      chunk: index,
    });
  const layout = await decodeImageBlocks(image, codec, (index, bytes) => {
    const expected = rawChecksums[index];
    if (bytes === null) {
      if (expected !== null) throw mismatch(index);
      return;
    }
    if (codec.checksum(bytes) !== (expected ?? zeroChecksum(bytes.length))) throw mismatch(index);
  });
  if (layout.size !== size || layout.blockSizes.length !== rawChecksums.length) {
    throw new CodecError("corrupt", `image read back: it holds ${layout.size} bytes, the raw file ${size}`);
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
): Promise<{ result: SquashfsWriteResult; checksums: ImageChecksums; rawChecksums: Array<string | null> }> {
  const options = compressorOptions(job.algorithm, job.level);
  const blocksStart = SUPERBLOCK_BYTES + options.length;
  const checksums: ImageChecksums = { version: 1, pieces: [] };
  let position = blocksStart;
  const blockSizes: number[] = [];
  let sparseBytes = 0;
  const blockCount = Math.ceil(job.size / BLOCK_SIZE);
  // XXH64 of each raw block as it was read (null: all zero), for the read-back check.
  const rawChecksums: Array<string | null> = new Array(blockCount).fill(null);
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
    const rawChecksum = job.codec.checksum(input); // before the codec sees the block
    const compressed = await job.codec.compress(job.algorithm, job.level, input, slot[1]!);
    if (compressed.zero) {
      slots.push(slot);
      return { bytes: Buffer.alloc(0), size: 0 };
    }
    rawChecksums[block] = rawChecksum;
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
    rawChecksums,
  };
}
