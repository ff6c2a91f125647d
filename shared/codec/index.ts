// The chunked, seekable compression codec used by the compression worker, fork and restore.
export { selectCodecBackendOrExit } from "./backend.ts";
export { type BlockCodec, blockCodec, type CompressedBlock } from "./blocks.ts";
export { type CompressResult, compressFile } from "./compress.ts";
export {
  type CompressedFileHeader,
  type DecompressResult,
  decompressFile,
  readCompressedHeader,
} from "./decompress.ts";
export { CodecError, type CodecErrorCode, ioStep } from "./errors.ts";
export { readExactly, writeFully } from "./files.ts";
export { type DataExtent, ExtentCursor } from "./holes.ts";
export {
  CODEC_BACKEND_NAMES,
  COMPRESSION_ALGORITHMS,
  type CodecBackendName,
  type CompressionAlgorithm,
  type CompressOptions,
  DEFAULT_CHUNK_SIZE,
  type DecompressOptions,
  LZ4_LEVELS,
  resolveCompressionLevel,
  validateCompressOptions,
  ZSTD_LEVELS,
} from "./options.ts";
export { runInOrder } from "./pipeline.ts";
