// The codec backends' frame engines alone, without files: the same 2 MiB chunks compressed and decoded in memory,
// 2 in flight (as the probe did), so disk writes and the machine's I/O pressure do not blur the comparison.
import { readFile } from "node:fs/promises";
import { type CodecBackend, loadCodecBackend } from "../../shared/codec/backend.ts";
import { isAllZero } from "../../shared/codec/holes.ts";
import { type CodecBackendName, type CompressionAlgorithm, DEFAULT_CHUNK_SIZE } from "../../shared/codec/index.ts";
import { median } from "./median.ts";

const IN_FLIGHT = 2;

export interface EngineFigures {
  compressSeconds: number;
  decompressSeconds: number;
  bytes: number;
  frameBytes: number;
}

/** The file's chunks that are not all zero (the ones any backend really compresses), at most `limit`. */
export async function dataChunks(source: string, limit = 64): Promise<Buffer[]> {
  const bytes = await readFile(source);
  const chunks: Buffer[] = [];
  for (let offset = 0; offset < bytes.length && chunks.length < limit; offset += DEFAULT_CHUNK_SIZE) {
    const chunk = bytes.subarray(offset, offset + DEFAULT_CHUNK_SIZE);
    if (!isAllZero(chunk)) chunks.push(Buffer.from(chunk));
  }
  return chunks;
}

/** Runs `work` on IN_FLIGHT loops; each loop owns its `output` buffer, as a chunk in flight must. */
async function inFlight<T>(count: number, outputs: Buffer[], work: (item: number, output: Buffer) => Promise<T>) {
  const results: T[] = new Array(count);
  let next = 0;
  const loop = async (output: Buffer) => {
    while (next < count) {
      const item = next++;
      results[item] = await work(item, output);
    }
  };
  await Promise.all(outputs.map(loop));
  return results;
}

async function roundTrip(backend: CodecBackend, algorithm: CompressionAlgorithm, level: number, chunks: Buffer[]) {
  const codec = backend.frames[algorithm];
  const outputs = Array.from({ length: IN_FLIGHT * 2 }, () =>
    Buffer.allocUnsafe(codec.outputBound(DEFAULT_CHUNK_SIZE)),
  );
  let started = performance.now();
  const frames = await inFlight(chunks.length, outputs, async (item, output) => {
    const { bytes } = await codec.compress(chunks[item]!, level, output, false);
    return Buffer.from(bytes); // the native backend writes into a reused buffer
  });
  const compressSeconds = (performance.now() - started) / 1000;
  started = performance.now();
  await inFlight(frames.length, outputs, async (item, output) => {
    const { bytes } = await codec.decompress(frames[item]!, output);
    if (!bytes.equals(chunks[item]!)) throw new Error(`chunk ${item} did not decode to its bytes`);
  });
  const decompressSeconds = (performance.now() - started) / 1000;
  return { compressSeconds, decompressSeconds, frameBytes: frames.reduce((sum, frame) => sum + frame.length, 0) };
}

/** Median-of-rounds compress and decompress time of `chunks` on one backend, after one untimed warm-up. */
export async function measureEngine(
  name: CodecBackendName,
  algorithm: CompressionAlgorithm,
  level: number,
  chunks: Buffer[],
  rounds: number,
): Promise<EngineFigures> {
  const backend = await loadCodecBackend(name);
  await roundTrip(backend, algorithm, level, chunks.slice(0, 4));
  const runs = [];
  for (let round = 0; round < rounds; round++) runs.push(await roundTrip(backend, algorithm, level, chunks));
  return {
    compressSeconds: median(runs.map((run) => run.compressSeconds)),
    decompressSeconds: median(runs.map((run) => run.decompressSeconds)),
    bytes: chunks.reduce((sum, chunk) => sum + chunk.length, 0),
    frameBytes: runs[0]!.frameBytes,
  };
}
