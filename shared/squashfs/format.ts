// The squashfs 4.0 structures of a one-file image; pure encoders, no I/O. Layout we write (all little-endian):
//   superblock (96 B) | compressor options | data blocks | inode table | directory table | id block | id index
// Metadata blocks are stored uncompressed (header bit 15); the one file has no fragment (its tail is a short block
// of its own), zero blocks are sparse (size 0), and there are no xattrs and no export table.
// Reference: the kernel's fs/squashfs/squashfs_fs.h and squashfs-tools' squashfs_fs.h.

export const SQUASHFS_MAGIC = 0x73717368;
export const SUPERBLOCK_BYTES = 96;
/** The largest block squashfs allows; a fault in a cold block decompresses this much into the page cache. */
export const BLOCK_SIZE = 1 << 20;
const BLOCK_LOG = 20;
const METADATA_BLOCK_BYTES = 8192;
const METADATA_UNCOMPRESSED = 0x8000;
/** Block-list bit marking a data block stored uncompressed (it did not shrink). */
export const BLOCK_UNCOMPRESSED = 1 << 24;
const NO_TABLE = 0xffff_ffff_ffff_ffffn;
const NO_INDEX = 0xffff_ffff;
/** The kernel's loop device and mksquashfs both want the image padded to this. */
export const IMAGE_ALIGNMENT = 4096;

const COMPRESSOR_IDS = { zstd: 6, lz4: 5 } as const;
const FLAG_UNCOMPRESSED_INODES = 0x0001;
const FLAG_UNCOMPRESSED_FRAGMENTS = 0x0008;
const FLAG_NO_FRAGMENTS = 0x0010;
const FLAG_NO_XATTRS = 0x0200;
const FLAG_COMPRESSOR_OPTIONS = 0x0400;
const FLAG_UNCOMPRESSED_IDS = 0x0800;
const INODE_BASIC_DIRECTORY = 1;
const INODE_BASIC_FILE = 2;
const INODE_EXTENDED_FILE = 9;
const LZ4_LEGACY_VERSION = 1;
const LZ4_FLAG_HC = 1;
/** At and above this our lz4 level is LZ4HC (see shared/codec options), which squashfs records as a flag. */
const LZ4_HC_MIN_LEVEL = 3;

export type ImageCompressor = keyof typeof COMPRESSOR_IDS;

/** Inode numbers: the file first, the root directory last (as mksquashfs numbers them). */
const FILE_INODE_NUMBER = 1;
const ROOT_INODE_NUMBER = 2;
const INODE_COUNT = 2;

/**
 * The compressor options block right after the superblock. zstd records its level; lz4 (always present for lz4)
 * records only the legacy format and whether blocks are LZ4HC — squashfs keeps no finer lz4 level.
 */
export function compressorOptions(compressor: ImageCompressor, level: number): Buffer {
  const body =
    compressor === "zstd" ? u32s(level) : u32s(LZ4_LEGACY_VERSION, level >= LZ4_HC_MIN_LEVEL ? LZ4_FLAG_HC : 0);
  return metadataBlocks(body);
}

export interface ImageFile {
  name: string;
  size: number;
  /** Unix seconds. */
  mtime: number;
  /** Absolute offset of the first data block. */
  blocksStart: number;
  /** Per block: bytes stored, with BLOCK_UNCOMPRESSED when stored raw; 0 for a sparse (all-zero) block. */
  blockSizes: number[];
  /** Bytes left out as sparse blocks. */
  sparseBytes: number;
}

export interface ImageTables {
  /** Everything from the inode table to the end of the id index, to write at `tablesStart`. */
  tables: Buffer;
  superblock: Buffer;
  /** bytes_used: where the image's content ends (before padding). */
  bytesUsed: number;
}

/** The tables and superblock of an image whose data blocks end at `tablesStart`. */
export function encodeTables(
  file: ImageFile,
  compressor: ImageCompressor,
  hasOptions: boolean,
  tablesStart: number,
): ImageTables {
  const fileInode = extendedFileInode(file);
  const directoryInodeOffset = fileInode.length;
  const listing = directoryListing(file.name);
  const directoryInode = basicDirectoryInode(file.mtime, listing.length);
  const inodeTable = metadataBlocks(Buffer.concat([fileInode, directoryInode]));
  const directoryTable = metadataBlocks(listing);
  const idBlock = metadataBlocks(u32s(0)); // uid/gid 0 (root), the only id
  const inodeTableStart = tablesStart;
  const directoryTableStart = inodeTableStart + inodeTable.length;
  const idBlockStart = directoryTableStart + directoryTable.length;
  const idTableStart = idBlockStart + idBlock.length;
  const idIndex = Buffer.alloc(8);
  idIndex.writeBigUInt64LE(BigInt(idBlockStart));
  const bytesUsed = idTableStart + idIndex.length;

  const superblock = Buffer.alloc(SUPERBLOCK_BYTES);
  let at = superblock.writeUInt32LE(SQUASHFS_MAGIC, 0);
  at = superblock.writeUInt32LE(INODE_COUNT, at);
  at = superblock.writeUInt32LE(file.mtime, at);
  at = superblock.writeUInt32LE(BLOCK_SIZE, at);
  at = superblock.writeUInt32LE(0, at); // fragment entries
  at = superblock.writeUInt16LE(COMPRESSOR_IDS[compressor], at);
  at = superblock.writeUInt16LE(BLOCK_LOG, at);
  const flags =
    FLAG_UNCOMPRESSED_INODES |
    FLAG_UNCOMPRESSED_FRAGMENTS |
    FLAG_NO_FRAGMENTS |
    FLAG_NO_XATTRS |
    FLAG_UNCOMPRESSED_IDS |
    (hasOptions ? FLAG_COMPRESSOR_OPTIONS : 0);
  at = superblock.writeUInt16LE(flags, at);
  at = superblock.writeUInt16LE(1, at); // id count
  at = superblock.writeUInt16LE(4, at); // version 4.0
  at = superblock.writeUInt16LE(0, at);
  at = superblock.writeBigUInt64LE(inodeReference(directoryInodeOffset), at);
  at = superblock.writeBigUInt64LE(BigInt(bytesUsed), at);
  at = superblock.writeBigUInt64LE(BigInt(idTableStart), at);
  at = superblock.writeBigUInt64LE(NO_TABLE, at); // xattr id table
  at = superblock.writeBigUInt64LE(BigInt(inodeTableStart), at);
  at = superblock.writeBigUInt64LE(BigInt(directoryTableStart), at);
  // No fragments: the fragment table is empty and starts where the directory table ends (as mksquashfs writes it).
  at = superblock.writeBigUInt64LE(BigInt(idBlockStart), at);
  superblock.writeBigUInt64LE(NO_TABLE, at); // export (lookup) table

  return { tables: Buffer.concat([inodeTable, directoryTable, idBlock, idIndex]), superblock, bytesUsed };
}

function inodeHeader(type: number, mode: number, mtime: number, inodeNumber: number): Buffer {
  const header = Buffer.alloc(16);
  let at = header.writeUInt16LE(type, 0);
  at = header.writeUInt16LE(mode, at);
  at = header.writeUInt16LE(0, at); // uid index
  at = header.writeUInt16LE(0, at); // gid index
  at = header.writeUInt32LE(mtime, at);
  header.writeUInt32LE(inodeNumber, at);
  return header;
}

/** Extended regular file: 64-bit start and size, so files of 4 GiB and more fit. */
function extendedFileInode(file: ImageFile): Buffer {
  const body = Buffer.alloc(40 + 4 * file.blockSizes.length);
  let at = body.writeBigUInt64LE(BigInt(file.blocksStart), 0);
  at = body.writeBigUInt64LE(BigInt(file.size), at);
  at = body.writeBigUInt64LE(BigInt(file.sparseBytes), at);
  at = body.writeUInt32LE(1, at); // links
  at = body.writeUInt32LE(NO_INDEX, at); // no fragment
  at = body.writeUInt32LE(0, at); // fragment offset
  at = body.writeUInt32LE(NO_INDEX, at); // no xattrs
  for (const size of file.blockSizes) at = body.writeUInt32LE(size, at);
  return Buffer.concat([inodeHeader(INODE_EXTENDED_FILE, 0o600, file.mtime, FILE_INODE_NUMBER), body]);
}

function basicDirectoryInode(mtime: number, listingBytes: number): Buffer {
  const body = Buffer.alloc(16);
  let at = body.writeUInt32LE(0, 0); // listing's metadata block, relative to the directory table
  at = body.writeUInt32LE(2, at); // links: itself and its parent
  at = body.writeUInt16LE(listingBytes + 3, at); // squashfs counts 3 bytes more, for "." and ".."
  at = body.writeUInt16LE(0, at); // offset in that block
  body.writeUInt32LE(INODE_COUNT + 1, at); // the root's parent, by convention
  return Buffer.concat([inodeHeader(INODE_BASIC_DIRECTORY, 0o755, mtime, ROOT_INODE_NUMBER), body]);
}

/** One header and one entry: the file, whose inode is the first in the inode table. */
function directoryListing(name: string): Buffer {
  const nameBytes = Buffer.from(name, "utf8");
  const listing = Buffer.alloc(12 + 8 + nameBytes.length);
  let at = listing.writeUInt32LE(0, 0); // entries - 1
  at = listing.writeUInt32LE(0, at); // inode metadata block, relative to the inode table
  at = listing.writeUInt32LE(FILE_INODE_NUMBER, at);
  at = listing.writeUInt16LE(0, at); // inode offset in that block
  at = listing.writeInt16LE(0, at); // inode number delta
  at = listing.writeUInt16LE(INODE_BASIC_FILE, at); // entries carry the basic type
  at = listing.writeUInt16LE(nameBytes.length - 1, at);
  nameBytes.copy(listing, at);
  return listing;
}

/** The reference of an inode at `offset` of the uncompressed inode table: metadata block start << 16 | offset in it. */
function inodeReference(offset: number): bigint {
  const block = Math.floor(offset / METADATA_BLOCK_BYTES);
  const blockStart = block * (2 + METADATA_BLOCK_BYTES); // uncompressed blocks: header + 8 KiB each
  return (BigInt(blockStart) << 16n) | BigInt(offset % METADATA_BLOCK_BYTES);
}

/** Splits `data` into uncompressed metadata blocks of at most 8 KiB, each behind its 2-byte header. */
function metadataBlocks(data: Buffer): Buffer {
  const parts: Buffer[] = [];
  for (let start = 0; start < data.length; start += METADATA_BLOCK_BYTES) {
    const piece = data.subarray(start, start + METADATA_BLOCK_BYTES);
    const header = Buffer.alloc(2);
    header.writeUInt16LE(METADATA_UNCOMPRESSED | piece.length);
    parts.push(header, piece);
  }
  return Buffer.concat(parts);
}

function u32s(...values: number[]): Buffer {
  const buffer = Buffer.alloc(4 * values.length);
  for (const [index, value] of values.entries()) buffer.writeUInt32LE(value, 4 * index);
  return buffer;
}
