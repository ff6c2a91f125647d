// The compressed file's trailer: a Snapfleet index frame, then a zstd seekable-format seek table, both skippable.
//
// File layout: frame(chunk 0) … frame(chunk n-1) | index frame | seek table frame
// - Index frame (skippable, magic 0x184D2A5C): "SFCX", version, algorithm, level, log2(chunk size),
//   uncompressed size (u64), chunk count (u32), a bitmap of zero chunks, then the low 32 bits of XXH64 over the
//   index content before it and the whole seek table frame, so a damaged table is detected, not trusted.
// - Seek table frame, exactly the zstd seekable format (skippable, magic 0x184D2A5E): per chunk
//   compressed size (u32), decompressed size (u32), low 32 bits of XXH64 of the uncompressed chunk (u32); then
//   the footer: frame count (u32), descriptor 0x80 (checksums present), seekable magic 0x8F92EAB1.
// All integers are little-endian. Frame offsets are the running sum of compressed sizes. `zstd -d` and `lz4 -d`
// skip both skippable frames, so they decode the file to the original bytes.
import { CodecError } from "./errors.ts";
import { type CompressionAlgorithm, MAX_CHUNK_SIZE, MIN_CHUNK_SIZE } from "./options.ts";

const INDEX_FRAME_MAGIC = 0x184d2a5c;
const SEEK_TABLE_FRAME_MAGIC = 0x184d2a5e;
const SEEKABLE_MAGIC = 0x8f92eab1;
const SEEK_TABLE_DESCRIPTOR_CHECKSUMS = 0x80;
const INDEX_SIGNATURE = Buffer.from("SFCX", "latin1");
const FORMAT_VERSION = 1;
const SKIPPABLE_HEADER_BYTES = 8;
const SEEK_ENTRY_BYTES = 12;
const SEEK_FOOTER_BYTES = 9;
const INDEX_HEADER_BYTES = 20;
const INDEX_CHECKSUM_BYTES = 4;
const ALGORITHM_IDS: Record<CompressionAlgorithm, number> = { zstd: 1, lz4: 2 };

export interface ChunkEntry {
  /** Offset of the chunk's frame in the compressed file. */
  frameOffset: number;
  frameLength: number;
  /** Offset of the chunk in the uncompressed data. */
  offset: number;
  length: number;
  checksum: number;
  zero: boolean;
}

export interface ChunkIndex {
  algorithm: CompressionAlgorithm;
  level: number;
  chunkSize: number;
  uncompressedSize: number;
  chunks: ChunkEntry[];
  /** Bytes of chunk frames, i.e. where the trailer starts. */
  framesLength: number;
}

/** Low 32 bits of XXH64 with seed 0 (a backend's `checksum`). */
export type Checksum = (data: Uint8Array) => number;

/** The trailer size for `chunkCount` chunks: index frame plus seek table frame. */
export function trailerLength(chunkCount: number): number {
  return indexFrameLength(chunkCount) + seekTableFrameLength(chunkCount);
}

function indexFrameLength(chunkCount: number): number {
  return SKIPPABLE_HEADER_BYTES + INDEX_HEADER_BYTES + Math.ceil(chunkCount / 8) + INDEX_CHECKSUM_BYTES;
}

function seekTableFrameLength(chunkCount: number): number {
  return SKIPPABLE_HEADER_BYTES + chunkCount * SEEK_ENTRY_BYTES + SEEK_FOOTER_BYTES;
}

export function encodeTrailer(index: Omit<ChunkIndex, "framesLength">, checksum: Checksum): Buffer {
  const count = index.chunks.length;
  const trailer = Buffer.alloc(trailerLength(count));
  const seekStart = indexFrameLength(count);
  let position = trailer.writeUInt32LE(SEEK_TABLE_FRAME_MAGIC, seekStart);
  position = trailer.writeUInt32LE(count * SEEK_ENTRY_BYTES + SEEK_FOOTER_BYTES, position);
  for (const chunk of index.chunks) {
    position = trailer.writeUInt32LE(chunk.frameLength, position);
    position = trailer.writeUInt32LE(chunk.length, position);
    position = trailer.writeUInt32LE(chunk.checksum >>> 0, position);
  }
  position = trailer.writeUInt32LE(count, position);
  position = trailer.writeUInt8(SEEK_TABLE_DESCRIPTOR_CHECKSUMS, position);
  trailer.writeUInt32LE(SEEKABLE_MAGIC, position);

  position = trailer.writeUInt32LE(INDEX_FRAME_MAGIC, 0);
  position = trailer.writeUInt32LE(seekStart - SKIPPABLE_HEADER_BYTES, position);
  position += INDEX_SIGNATURE.copy(trailer, position);
  position = trailer.writeUInt8(FORMAT_VERSION, position);
  position = trailer.writeUInt8(ALGORITHM_IDS[index.algorithm], position);
  position = trailer.writeUInt8(index.level, position);
  position = trailer.writeUInt8(Math.log2(index.chunkSize), position);
  position = trailer.writeBigUInt64LE(BigInt(index.uncompressedSize), position);
  position = trailer.writeUInt32LE(count, position);
  index.chunks.forEach((chunk, chunkNumber) => {
    if (chunk.zero) trailer[position + (chunkNumber >> 3)]! |= 1 << (chunkNumber & 7);
  });
  const checksumAt = seekStart - INDEX_CHECKSUM_BYTES;
  trailer.writeUInt32LE(trailerChecksum(trailer, checksumAt, seekStart, checksum), checksumAt);
  return trailer;
}

function trailerChecksum(trailer: Buffer, checksumAt: number, seekStart: number, checksum: Checksum): number {
  return checksum(Buffer.concat([trailer.subarray(SKIPPABLE_HEADER_BYTES, checksumAt), trailer.subarray(seekStart)]));
}

function corrupt(message: string): never {
  throw new CodecError("corrupt", `compressed file ${message}`);
}

/** Footer → chunk count, so the caller can read exactly the trailer. Throws when the footer is missing. */
export function chunkCountFromFooter(footer: Buffer, fileSize: number): number {
  if (footer.length !== SEEK_FOOTER_BYTES || footer.readUInt32LE(5) !== SEEKABLE_MAGIC) {
    corrupt("is truncated or not in the chunked format: no seek table at its end");
  }
  if (footer[4] !== SEEK_TABLE_DESCRIPTOR_CHECKSUMS) corrupt("has an unsupported seek table descriptor");
  const count = footer.readUInt32LE(0);
  if (trailerLength(count) > fileSize) corrupt("is truncated: its seek table is longer than the file");
  return count;
}

export const FOOTER_LENGTH = SEEK_FOOTER_BYTES;

/** Parses and checks a trailer read from the end of a file of `fileSize` bytes. */
export function decodeTrailer(trailer: Buffer, chunkCount: number, fileSize: number, checksum: Checksum): ChunkIndex {
  const seekStart = indexFrameLength(chunkCount);
  if (trailer.readUInt32LE(0) !== INDEX_FRAME_MAGIC || trailer.readUInt32LE(seekStart) !== SEEK_TABLE_FRAME_MAGIC) {
    corrupt("has a damaged trailer: frame magic numbers do not match");
  }
  const checksumAt = seekStart - INDEX_CHECKSUM_BYTES;
  if (
    !INDEX_SIGNATURE.equals(trailer.subarray(8, 12)) ||
    trailer.readUInt32LE(checksumAt) !== trailerChecksum(trailer, checksumAt, seekStart, checksum)
  ) {
    corrupt("has a damaged index or seek table: checksum mismatch");
  }
  if (trailer[12] !== FORMAT_VERSION) corrupt(`has unsupported format version ${trailer[12]}`);
  const algorithm = (Object.keys(ALGORITHM_IDS) as CompressionAlgorithm[]).find(
    (name) => ALGORITHM_IDS[name] === trailer[13],
  );
  if (!algorithm) corrupt(`names an unknown algorithm id ${trailer[13]}`);
  const level = trailer[14]!;
  const chunkSize = 2 ** trailer[15]!;
  // Sizes from the file are bounded before anything is allocated or written from them.
  if (chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    corrupt(`declares a chunk size of ${chunkSize} bytes, outside ${MIN_CHUNK_SIZE}-${MAX_CHUNK_SIZE}`);
  }
  const declaredSize = trailer.readBigUInt64LE(16);
  if (declaredSize > BigInt(Number.MAX_SAFE_INTEGER)) corrupt(`declares an impossible size of ${declaredSize} bytes`);
  const uncompressedSize = Number(declaredSize);
  if (trailer.readUInt32LE(24) !== chunkCount || Math.ceil(uncompressedSize / chunkSize) !== chunkCount) {
    corrupt("has an index that disagrees with its seek table");
  }
  const bitmapStart = SKIPPABLE_HEADER_BYTES + INDEX_HEADER_BYTES;
  const chunks: ChunkEntry[] = [];
  let frameOffset = 0;
  let entryAt = seekStart + SKIPPABLE_HEADER_BYTES;
  for (let chunkNumber = 0; chunkNumber < chunkCount; chunkNumber++, entryAt += SEEK_ENTRY_BYTES) {
    const offset = chunkNumber * chunkSize;
    const chunk: ChunkEntry = {
      frameOffset,
      frameLength: trailer.readUInt32LE(entryAt),
      offset,
      length: trailer.readUInt32LE(entryAt + 4),
      checksum: trailer.readUInt32LE(entryAt + 8),
      zero: (trailer[bitmapStart + (chunkNumber >> 3)]! & (1 << (chunkNumber & 7))) !== 0,
    };
    if (chunk.length !== Math.min(chunkSize, uncompressedSize - offset)) {
      corrupt(`has a seek table entry with a wrong size for chunk ${chunkNumber}`);
    }
    chunks.push(chunk);
    frameOffset += chunk.frameLength;
  }
  if (frameOffset + trailer.length !== fileSize) {
    corrupt(`is truncated or damaged: frames take ${frameOffset} bytes, the file holds ${fileSize - trailer.length}`);
  }
  return { algorithm, level, chunkSize, uncompressedSize, chunks, framesLength: frameOffset };
}
