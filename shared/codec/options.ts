// Algorithms, levels and chunk sizes the codec accepts; everything is validated before any work starts.
import { availableParallelism } from "node:os";
import { CodecError } from "./errors.ts";

export type CompressionAlgorithm = "zstd" | "lz4";

export const COMPRESSION_ALGORITHMS: readonly CompressionAlgorithm[] = ["zstd", "lz4"];

/** native: our addon on Debian's libzstd/liblz4/xxhash (fast); packages: @mongodb-js/zstd, lz4-napi, xxhash-wasm. */
export const CODEC_BACKEND_NAMES = ["native", "packages"] as const;
export type CodecBackendName = (typeof CODEC_BACKEND_NAMES)[number];
/** CODEC_BACKEND: `auto` is native when the addon loads, else packages. */
export const CODEC_BACKEND_CHOICES = ["auto", ...CODEC_BACKEND_NAMES] as const;
export type CodecBackendChoice = (typeof CODEC_BACKEND_CHOICES)[number];

export const ZSTD_LEVELS = { min: 1, max: 19, default: 1 } as const;

/**
 * lz4 levels mean what they mean to the `lz4` command (the same liblz4): 0 to 2 are its one fast mode (as
 * `lz4 -1`), 3 to 9 are LZ4HC, slower and smaller. The packages backend (lz4-napi) has only the fast mode: there
 * every level compresses as 0. The level used is recorded in the file's index.
 */
export const LZ4_LEVELS = { min: 0, max: 9, default: 0 } as const;

export const LEVELS_BY_ALGORITHM = { zstd: ZSTD_LEVELS, lz4: LZ4_LEVELS } as const;

export const PAGE_SIZE = 4096;
/** 2 MiB: fastest of 1/2/4 MiB in bench/codec.ts and the guest's huge-page size, so zero runs align with it. */
export const DEFAULT_CHUNK_SIZE = 2 << 20;
export const MIN_CHUNK_SIZE = PAGE_SIZE;
/** The seek table stores a chunk's decompressed size in 32 bits; 64 MiB keeps chunks in flight small anyway. */
export const MAX_CHUNK_SIZE = 64 << 20;

export interface CompressOptions {
  algorithm: CompressionAlgorithm;
  level?: number;
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  /** Chunks compressed at once; defaults to one more than the number of cores. */
  concurrency?: number;
  chunkSize?: number;
  /** Defaults to the process's choice (CODEC_BACKEND, see backend.ts). */
  backend?: CodecBackendName;
}

export interface DecompressOptions {
  signal?: AbortSignal;
  onProgress?: (done: number, total: number) => void;
  concurrency?: number;
  /** Defaults to the process's choice (CODEC_BACKEND, see backend.ts). */
  backend?: CodecBackendName;
}

function reject(message: string): never {
  throw new CodecError("invalid_argument", message);
}

export function validateAlgorithm(algorithm: unknown): CompressionAlgorithm {
  if (algorithm === "zstd" || algorithm === "lz4") return algorithm;
  return reject(`unsupported compression algorithm ${JSON.stringify(algorithm)}: expected zstd or lz4`);
}

/** The level to use: the algorithm's default when none is given, else the given level if it is in range. */
export function resolveCompressionLevel(algorithm: CompressionAlgorithm, level?: number): number {
  const levels = LEVELS_BY_ALGORITHM[validateAlgorithm(algorithm)];
  if (level === undefined) return levels.default;
  if (!Number.isInteger(level) || level < levels.min || level > levels.max) {
    reject(`${algorithm} level must be an integer from ${levels.min} to ${levels.max}, got ${level}`);
  }
  return level;
}

/**
 * One more than the cores keeps them busy while the main thread reads and writes chunks (measured). Chunks run on
 * the libuv pool, 4 threads unless the process starts with UV_THREADPOOL_SIZE set: give it cores + 2 on machines
 * with more than 2 cores, or the pool, not the cores, bounds the parallelism.
 */
export function resolveConcurrency(concurrency?: number): number {
  if (concurrency === undefined) return availableParallelism() + 1;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 256) {
    reject(`concurrency must be an integer from 1 to 256, got ${concurrency}`);
  }
  return concurrency;
}

export function resolveChunkSize(chunkSize?: number): number {
  if (chunkSize === undefined) return DEFAULT_CHUNK_SIZE;
  const isPowerOfTwo = Number.isInteger(chunkSize) && chunkSize > 0 && (chunkSize & (chunkSize - 1)) === 0;
  if (!isPowerOfTwo || chunkSize < MIN_CHUNK_SIZE || chunkSize > MAX_CHUNK_SIZE) {
    reject(`chunk size must be a power of two from ${MIN_CHUNK_SIZE} to ${MAX_CHUNK_SIZE} bytes, got ${chunkSize}`);
  }
  return chunkSize;
}

export function validateBackendName(backend?: CodecBackendName): CodecBackendName | undefined {
  if (backend === undefined || CODEC_BACKEND_NAMES.includes(backend)) return backend;
  return reject(`unknown codec backend ${JSON.stringify(backend)}: expected ${CODEC_BACKEND_NAMES.join(" or ")}`);
}

export interface ResolvedCompressOptions {
  algorithm: CompressionAlgorithm;
  level: number;
  concurrency: number;
  chunkSize: number;
  backend: CodecBackendName | undefined;
}

/** Validates every compress option at once, so a bad request fails before any file is opened. */
export function validateCompressOptions(options: CompressOptions): ResolvedCompressOptions {
  const algorithm = validateAlgorithm(options?.algorithm);
  return {
    algorithm,
    level: resolveCompressionLevel(algorithm, options.level),
    concurrency: resolveConcurrency(options.concurrency),
    chunkSize: resolveChunkSize(options.chunkSize),
    backend: validateBackendName(options.backend),
  };
}
