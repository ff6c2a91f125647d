// Child process of bench/codec.ts: runs one compressFile or decompressFile (each fsyncs its output) on one backend,
// prints its time and peak RSS as JSON.
// Like a long-running worker, it first warms up (JIT, thread pool) on a 16 MiB file; that run is not timed.
import { readFileSync } from "node:fs";
import { open, rm } from "node:fs/promises";
import { type CodecBackendName, compressFile, decompressFile } from "../../shared/codec/index.ts";

const WARM_UP_BYTES = 16 << 20;

interface CodecRun {
  backend: CodecBackendName;
  operation: "compress" | "decompress";
  source: string;
  destination: string;
  algorithm?: "zstd" | "lz4";
  level?: number;
  chunkSize?: number;
  /** Chunks in flight (the codec's default: cores + 1); 1 for the per-thread figure. */
  concurrency?: number;
}

async function warmUp(): Promise<void> {
  const warmUpFile = `${request.destination}.warm-up`;
  const handle = await open(warmUpFile, "w");
  await handle.write(Buffer.alloc(WARM_UP_BYTES, "warm up "));
  await handle.close();
  await compressFile(warmUpFile, `${warmUpFile}.cmp`, {
    backend: request.backend,
    algorithm: request.algorithm ?? "zstd",
    level: request.level,
  });
  await decompressFile(`${warmUpFile}.cmp`, warmUpFile, { backend: request.backend });
  await rm(warmUpFile);
  await rm(`${warmUpFile}.cmp`);
}

/**
 * Peak RSS of this process (VmHWM). Not `resourceUsage().maxRSS`: Linux carries the parent's high-water mark
 * across fork and exec into it, so a child of a big parent would report the parent's peak.
 */
function peakRssBytes(): number {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync("/proc/self/status", "utf8"));
  return Number(match?.[1] ?? 0) * 1024;
}

const request = JSON.parse(process.argv[2] ?? "{}") as CodecRun;
const baselineRssBytes = peakRssBytes(); // node + tsx before any codec work
await warmUp();
const started = performance.now();
const result =
  request.operation === "compress"
    ? await compressFile(request.source, request.destination, {
        backend: request.backend,
        algorithm: request.algorithm ?? "zstd",
        level: request.level,
        chunkSize: request.chunkSize,
        concurrency: request.concurrency,
      })
    : await decompressFile(request.source, request.destination, {
        backend: request.backend,
        concurrency: request.concurrency,
      });
const seconds = (performance.now() - started) / 1000;
process.stdout.write(`${JSON.stringify({ seconds, peakRssBytes: peakRssBytes(), baselineRssBytes, result })}\n`);
