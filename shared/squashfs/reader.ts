// Reads back a one-file image as our writer lays it out (format.ts): superblock, the file's inode, then every data
// block decoded through our codec. The writer checks an image with it before the raw file it replaces may go.
import type { FileHandle } from "node:fs/promises";
import { type BlockCodec, CodecError, type CompressionAlgorithm, readExactly } from "../codec/index.ts";
import { BLOCK_SIZE, BLOCK_UNCOMPRESSED, SQUASHFS_MAGIC, SUPERBLOCK_BYTES } from "./format.ts";

const COMPRESSORS: Record<number, CompressionAlgorithm> = { 6: "zstd", 5: "lz4" };
const INODE_EXTENDED_FILE = 9;
const INODE_HEADER_BYTES = 16;
const EXTENDED_FILE_FIXED_BYTES = 40;
const METADATA_UNCOMPRESSED = 0x8000;

/** The image's one file as its inode describes it. */
export interface ImageLayout {
  algorithm: CompressionAlgorithm;
  size: number;
  blocksStart: number;
  blockSizes: number[];
}

const corrupt = (message: string) => new CodecError("corrupt", `image: ${message}`);

/** Parses the superblock and the file's inode. */
export async function readImageLayout(image: FileHandle): Promise<ImageLayout> {
  const superblock = Buffer.alloc(SUPERBLOCK_BYTES);
  await readExactly(image, superblock, 0, SUPERBLOCK_BYTES, 0);
  if (superblock.readUInt32LE(0) !== SQUASHFS_MAGIC) throw corrupt("no squashfs magic");
  if (superblock.readUInt32LE(12) !== BLOCK_SIZE) throw corrupt(`block size ${superblock.readUInt32LE(12)}`);
  const algorithm = COMPRESSORS[superblock.readUInt16LE(20)];
  if (!algorithm) throw corrupt(`unknown compressor ${superblock.readUInt16LE(20)}`);
  const inodeTableStart = Number(superblock.readBigUInt64LE(64));
  const directoryTableStart = Number(superblock.readBigUInt64LE(72));
  const inodes = await readMetadata(image, inodeTableStart, directoryTableStart);
  if (inodes.length < INODE_HEADER_BYTES + EXTENDED_FILE_FIXED_BYTES) throw corrupt("inode table too short");
  if (inodes.readUInt16LE(0) !== INODE_EXTENDED_FILE) throw corrupt("the first inode is not a file");
  const body = INODE_HEADER_BYTES;
  const blocksStart = Number(inodes.readBigUInt64LE(body));
  const size = Number(inodes.readBigUInt64LE(body + 8));
  const count = Math.ceil(size / BLOCK_SIZE);
  const listStart = body + EXTENDED_FILE_FIXED_BYTES;
  if (inodes.length < listStart + 4 * count) throw corrupt("block list cut short");
  const blockSizes = Array.from({ length: count }, (_, index) => inodes.readUInt32LE(listStart + 4 * index));
  return { algorithm, size, blocksStart, blockSizes };
}

/** The uncompressed metadata blocks between `start` and `end`, headers dropped. */
async function readMetadata(image: FileHandle, start: number, end: number): Promise<Buffer> {
  if (end <= start) throw corrupt("empty inode table");
  const raw = Buffer.alloc(end - start);
  await readExactly(image, raw, 0, raw.length, start);
  const parts: Buffer[] = [];
  for (let at = 0; at < raw.length; ) {
    const header = raw.readUInt16LE(at);
    if (!(header & METADATA_UNCOMPRESSED)) throw corrupt("compressed metadata (our writer stores it plain)");
    const length = header & ~METADATA_UNCOMPRESSED;
    parts.push(raw.subarray(at + 2, at + 2 + length));
    at += 2 + length;
  }
  return Buffer.concat(parts);
}

/**
 * Decodes every data block in order and hands it to `visit` (index, bytes); a sparse block comes as `null` (zeros).
 * The buffer is reused: `visit` must be done with it when it returns.
 */
export async function decodeImageBlocks(
  image: FileHandle,
  codec: BlockCodec,
  visit: (index: number, bytes: Buffer | null) => void,
): Promise<ImageLayout> {
  const layout = await readImageLayout(image);
  const stored = Buffer.allocUnsafe(codec.outputBound(layout.algorithm, BLOCK_SIZE));
  const decoded = Buffer.allocUnsafe(BLOCK_SIZE);
  let position = layout.blocksStart;
  for (const [index, entry] of layout.blockSizes.entries()) {
    const length = Math.min(BLOCK_SIZE, layout.size - index * BLOCK_SIZE);
    if (entry === 0) {
      visit(index, null);
      continue;
    }
    const storedLength = entry & ~BLOCK_UNCOMPRESSED;
    if (storedLength > stored.length) throw corrupt(`block ${index} is ${storedLength} bytes`);
    await readExactly(image, stored, 0, storedLength, position);
    position += storedLength;
    const block = stored.subarray(0, storedLength);
    if (entry & BLOCK_UNCOMPRESSED) {
      if (storedLength !== length) throw corrupt(`uncompressed block ${index} is ${storedLength} bytes, not ${length}`);
      visit(index, block);
    } else {
      visit(index, await codec.decompress(layout.algorithm, block, decoded.subarray(0, length)));
    }
  }
  return layout;
}
