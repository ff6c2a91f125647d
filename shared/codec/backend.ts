// The codec's two engines behind one interface, and which one a process uses. Both write and read the same
// file: the same standard frames, seek table and XXH64 checksums (see format.ts), so either reads the other's.
import type { DataExtent } from "./holes.ts";
import { createNativeBackend } from "./native-backend.ts";
import type { CodecBackendChoice, CodecBackendName, CompressionAlgorithm } from "./options.ts";
import { createPackagesBackend } from "./packages-backend.ts";

/** `checksum`: low 32 bits of XXH64 of the uncompressed bytes. */
export interface FrameResult {
  /** The frame (compressing) or the chunk (decoding): a view of `output`, or a buffer of the backend's own. */
  bytes: Buffer;
  checksum: number;
  /** Compressing only: the chunk was all zero, so nothing was compressed (`bytes` is empty). */
  zero: boolean;
}

/** One standard frame per chunk, zstd or LZ4. */
export interface FrameCodec {
  /** Room a frame of a `length`-byte chunk may need; buffers of this size are handed to `compress`. */
  outputBound(length: number): number;
  /** With `detectZero`, an all-zero chunk is reported (`zero`) instead of compressed. */
  compress(chunk: Uint8Array, level: number, output: Buffer, detectZero: boolean): Promise<FrameResult>;
  /** Fails if the frame is damaged or decodes to more than `output` holds. */
  decompress(frame: Uint8Array, output: Buffer): Promise<FrameResult>;
}

/** Raw LZ4 blocks (no frame header), the form squashfs stores; `zero` as in FrameResult, `checksum` unset (0). */
export interface RawBlockCodec {
  outputBound(length: number): number;
  compress(block: Uint8Array, level: number, output: Buffer): Promise<FrameResult>;
}

export interface CodecBackend {
  name: CodecBackendName;
  frames: Record<CompressionAlgorithm, FrameCodec>;
  /** Raw LZ4 blocks for squashfs images (shared/codec/blocks.ts). */
  lz4Block: RawBlockCodec;
  /** Low 32 bits of XXH64 with seed 0: the zstd seekable format's frame checksum. */
  checksum(data: Uint8Array): number;
  /** Full XXH64 with seed 0: squashfs images' checksum sidecars. */
  xxh64(data: Uint8Array): bigint;
  /** The file's data extents in order; a backend that cannot see holes reports the whole file as data. */
  findDataExtents(fd: number, size: number): DataExtent[];
  /** The level chunks are really compressed at for a requested one: what the file's index records. */
  effectiveLevel(algorithm: CompressionAlgorithm, level: number): number;
}

export type BackendLoaders = Record<CodecBackendName, () => Promise<CodecBackend>>;

/** Where a process's codec choice is reported: a pino logger fits. */
export interface BackendLog {
  info(message: string): void;
  warn(message: string): void;
}

/** What a process wants to hear of its choice beyond the log: `onCodecFallback` when `auto` fell back to packages. */
export interface CodecBackendHooks {
  onCodecFallback?(reason: string): void;
}

const loaded = new Map<CodecBackendName, Promise<CodecBackend>>();

const LOADERS: BackendLoaders = {
  native: async () => createNativeBackend(),
  packages: createPackagesBackend,
};

/** Loads a backend once per process; rejects, naming the reason, when it cannot load here. */
export function loadCodecBackend(name: CodecBackendName): Promise<CodecBackend> {
  let backend = loaded.get(name);
  if (!backend) {
    backend = LOADERS[name]().catch((error: unknown) => {
      throw new Error(`codec backend ${name} does not load: ${(error as Error).message}`, { cause: error });
    });
    loaded.set(name, backend);
  }
  return backend;
}

export const PACKAGES_BACKEND_NOTE =
  "@mongodb-js/zstd, lz4-napi and xxhash-wasm: same file format, slower decompression, and every lz4 level " +
  "compresses in lz4's fast mode (recorded as level 0)";

/**
 * `auto`: native when the addon loads, else packages with one warning and `onCodecFallback`. Rejects when the choice
 * cannot load.
 */
export async function resolveCodecBackend(
  choice: CodecBackendChoice,
  log: BackendLog,
  load: (name: CodecBackendName) => Promise<CodecBackend> = loadCodecBackend,
  hooks: CodecBackendHooks = {},
): Promise<CodecBackend> {
  if (choice !== "auto") {
    const backend = await load(choice);
    log.info(`codec backend: ${backend.name}${backend.name === "packages" ? ` (${PACKAGES_BACKEND_NOTE})` : ""}`);
    return backend;
  }
  try {
    const backend = await load("native");
    log.info("codec backend: native");
    return backend;
  } catch (nativeError) {
    const reason = (nativeError as Error).message;
    const backend = await load("packages").catch((packagesError: Error) => {
      throw new Error(`no codec backend loads here: ${reason}; ${packagesError.message}`, { cause: packagesError });
    });
    log.warn(`${reason}; using the packages codec backend (${PACKAGES_BACKEND_NOTE})`);
    hooks.onCodecFallback?.(reason);
    return backend;
  }
}

/** Until a process selects one, `auto` reports through Node's warnings (stderr). */
const PROCESS_WARNINGS: BackendLog = {
  info: () => {},
  warn: (message) => process.emitWarning(message, { code: "SNAPFLEET_CODEC_BACKEND" }),
};

let selected: Promise<CodecBackend> | undefined;

/** A process's choice (CODEC_BACKEND), made once at start-up; every codec call without a `backend` uses it. */
export function selectCodecBackend(
  choice: CodecBackendChoice,
  log: BackendLog,
  hooks: CodecBackendHooks = {},
): Promise<CodecBackend> {
  selected = resolveCodecBackend(choice, log, loadCodecBackend, hooks);
  return selected;
}

/** The backend named, else the process's selected one (`auto` if none was selected). */
export function codecBackend(name?: CodecBackendName): Promise<CodecBackend> {
  if (name) return loadCodecBackend(name);
  selected ??= resolveCodecBackend("auto", PROCESS_WARNINGS);
  return selected;
}

/** For process entry points: select, or log why no backend can run and exit with EX_CONFIG. */
export async function selectCodecBackendOrExit(
  choice: CodecBackendChoice,
  log: BackendLog & { fatal(message: string): void },
  hooks: CodecBackendHooks = {},
): Promise<CodecBackend> {
  return selectCodecBackend(choice, log, hooks).catch((error: Error) => {
    log.fatal(`${error.message} (CODEC_BACKEND=${choice})`);
    process.exit(78);
  });
}
