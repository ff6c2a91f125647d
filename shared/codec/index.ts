// The chunked, seekable compression codec used by the compression worker, fork and restore.
export { selectCodecBackendOrExit } from "./backend.ts";
export { type CompressResult, compressFile } from "./compress.ts";
export { type DecompressResult, decompressFile, readRange } from "./decompress.ts";
export { CodecError, type CodecErrorCode } from "./errors.ts";
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
