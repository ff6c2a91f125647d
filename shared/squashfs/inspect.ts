// A strict reader of images from outside (imports, pulls): an image is accepted only if it is exactly what our writer
// makes of one regular file, so the kernel's squashfs driver never sees metadata our own encoder did not produce.
// The one file's inode and block list are read, our encoder (format.ts) writes the superblock and tables again from
// them, and the image must match those bytes exactly: one regular file of the expected name and size, no links,
// devices, FIFOs, extra entries, fragments, xattrs or export table, data blocks end to end, zero padding.
import { open } from "node:fs/promises";
import { readExactly } from "../codec/index.ts";
import { ImageIntegrityError } from "./checksums.ts";
import {
  BLOCK_SIZE,
  BLOCK_UNCOMPRESSED,
  compressorOptions,
  encodeTables,
  IMAGE_ALIGNMENT,
  type ImageCompressor,
  SUPERBLOCK_BYTES,
} from "./format.ts";

export interface ExpectedImage {
  /** The one file's name inside the image. */
  name: string;
  /** The one file's size in bytes. */
  size: number;
}

const COMPRESSORS: Record<number, ImageCompressor> = { 6: "zstd", 5: "lz4" };
const METADATA_HEADER_BYTES = 2;
const METADATA_UNCOMPRESSED = 0x8000;
const METADATA_BLOCK_BYTES = 8192;
const INODE_TABLE_START_AT = 64;
const DIRECTORY_TABLE_START_AT = 72;
const FILE_INODE_FIXED_BYTES = 16 + 40;
const ZSTD_MAX_LEVEL = 22;
/** Our writer's lz4 levels as squashfs records them: the fast mode (0) or LZ4HC (3 and up). */
const LZ4_LEVEL_BY_FLAGS: Record<number, number> = { 0: 0, 1: 3 };

/** Throws ImageIntegrityError naming the first difference from what our writer would have made. */
export async function checkImageStructure(imagePath: string, expected: ExpectedImage): Promise<void> {
  const image = await open(imagePath, "r");
  try {
    const fileBytes = (await image.stat()).size;
    const reject = (problem: string): never => {
      throw new ImageIntegrityError(`${imagePath} is not an image this service writes: ${problem}`);
    };
    if (fileBytes < SUPERBLOCK_BYTES + METADATA_HEADER_BYTES) reject("it is shorter than a superblock");
    const read = async (offset: number, length: number) => {
      if (offset < 0 || length < 0 || offset + length > fileBytes) reject(`a table lies outside the file`);
      const buffer = Buffer.alloc(length);
      await readExactly(image, buffer, 0, length, offset);
      return buffer;
    };
    const superblock = await read(0, SUPERBLOCK_BYTES);
    const compressor = COMPRESSORS[superblock.readUInt16LE(20)] ?? reject("unknown compressor");
    const options = await readOptions(read, compressor, reject);
    const blocksStart = SUPERBLOCK_BYTES + options.length;
    const inodeTableStart = safeOffset(superblock.readBigUInt64LE(INODE_TABLE_START_AT), fileBytes, reject);
    const directoryTableStart = safeOffset(superblock.readBigUInt64LE(DIRECTORY_TABLE_START_AT), fileBytes, reject);
    if (directoryTableStart <= inodeTableStart) reject("its directory table comes before its inode table");
    const inodes = unpackMetadata(await read(inodeTableStart, directoryTableStart - inodeTableStart), reject);
    const blockCount = Math.ceil(expected.size / BLOCK_SIZE);
    if (inodes.length < FILE_INODE_FIXED_BYTES + 4 * blockCount) reject("its inode table is too short for the file");
    const mtime = superblock.readUInt32LE(8);
    const blockSizes = readBlockList(inodes, blockCount, expected.size, reject);
    const stored = blockSizes.reduce((sum, size) => sum + (size & (BLOCK_UNCOMPRESSED - 1)), 0);
    const sparseBytes = blockSizes.reduce(
      (sum, size, block) => sum + (size === 0 ? Math.min(BLOCK_SIZE, expected.size - block * BLOCK_SIZE) : 0),
      0,
    );
    if (blocksStart + stored !== inodeTableStart) reject("its data blocks do not end where its tables begin");
    const file = { name: expected.name, size: expected.size, mtime, blocksStart, blockSizes, sparseBytes };
    const rebuilt = encodeTables(file, compressor, true, inodeTableStart);
    if (!rebuilt.superblock.equals(superblock)) reject(`its superblock differs (expected one ${expected.name})`);
    const imageBytes = Math.ceil(rebuilt.bytesUsed / IMAGE_ALIGNMENT) * IMAGE_ALIGNMENT;
    if (fileBytes !== imageBytes) reject(`it holds ${fileBytes} bytes, its tables say ${imageBytes}`);
    const tail = await read(inodeTableStart, imageBytes - inodeTableStart);
    const tables = tail.subarray(0, rebuilt.tables.length);
    if (!tables.equals(rebuilt.tables)) reject(`its inodes or directory are not one regular file ${expected.name}`);
    if (tail.subarray(rebuilt.tables.length).some((byte) => byte !== 0)) reject("its padding holds data");
  } finally {
    await image.close();
  }
}

type Read = (offset: number, length: number) => Promise<Buffer>;
type Reject = (problem: string) => never;

/** The compressor options block, which must be one our writer makes for some level. */
async function readOptions(read: Read, compressor: ImageCompressor, reject: Reject): Promise<Buffer> {
  const bodyBytes = compressor === "zstd" ? 4 : 8;
  const options = await read(SUPERBLOCK_BYTES, METADATA_HEADER_BYTES + bodyBytes);
  const level =
    compressor === "zstd" ? options.readUInt32LE(METADATA_HEADER_BYTES) : LZ4_LEVEL_BY_FLAGS[options.readUInt32LE(6)];
  if (level === undefined || level > ZSTD_MAX_LEVEL) reject("its compressor options are out of range");
  if (!compressorOptions(compressor, level).equals(options)) reject("its compressor options differ");
  return options;
}

/** The file inode's block list: one entry per block, each a stored size no larger than the block it holds. */
function readBlockList(inodes: Buffer, blockCount: number, size: number, reject: Reject): number[] {
  const sizes: number[] = [];
  for (let block = 0; block < blockCount; block++) {
    const entry = inodes.readUInt32LE(FILE_INODE_FIXED_BYTES + 4 * block);
    const logical = Math.min(BLOCK_SIZE, size - block * BLOCK_SIZE);
    const bytes = entry & (BLOCK_UNCOMPRESSED - 1);
    const raw = (entry & BLOCK_UNCOMPRESSED) !== 0;
    const valid = entry === 0 || (entry < 2 * BLOCK_UNCOMPRESSED && (raw ? bytes === logical : bytes < logical));
    if (!valid) reject(`block ${block} has an impossible stored size`);
    sizes.push(entry);
  }
  return sizes;
}

/** Concatenates uncompressed metadata blocks (our writer stores none compressed). */
function unpackMetadata(region: Buffer, reject: Reject): Buffer {
  const parts: Buffer[] = [];
  for (let at = 0; at < region.length; ) {
    if (at + METADATA_HEADER_BYTES > region.length) reject("a metadata block is cut short");
    const header = region.readUInt16LE(at);
    const length = header & ~METADATA_UNCOMPRESSED;
    if (!(header & METADATA_UNCOMPRESSED) || length === 0 || length > METADATA_BLOCK_BYTES)
      reject("a metadata block is compressed or mis-sized");
    const end = at + METADATA_HEADER_BYTES + length;
    if (end > region.length) reject("a metadata block runs past its table");
    parts.push(region.subarray(at + METADATA_HEADER_BYTES, end));
    at = end;
  }
  return Buffer.concat(parts);
}

function safeOffset(value: bigint, fileBytes: number, reject: Reject): number {
  if (value > BigInt(fileBytes)) reject("a table starts past the end of the file");
  return Number(value);
}
