// npm run bench:codec — both codec backends (native addon, packages) against the zstd and lz4 commands.
//
// Files: the memory file (--memory-file <path>, else the RAM of a busybox guest booted here, which needs
// qemu-system-x86 and the image from scripts/build-image.ts, else a generated 256 MiB stand-in), then a generated dense
// 256 MiB mix (text, binary structures, random data, few zero pages: what the codec compresses, not what it skips).
// Beside the threaded rows, zstd 1 and lz4 0 get a per-thread row: the native backend one chunk at a time against
// `zstd -T1` / `lz4` (single-threaded).
// Options: --rounds <n> (default 1; 3 for figures to publish, the median of each), --level-19 (adds zstd 19, one
// round: minutes), --large (adds the sparse 1 GiB mix and peak RSS on a 4 GiB one: minutes more). With 3 rounds the
// run took 771 s on 2026-12-04 (2 cores, other work running); the default is meant to stay under 5 minutes.
import { execFile, spawn } from "node:child_process";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { CODEC_BACKEND_NAMES, type CodecBackendName } from "../shared/codec/index.ts";
import { dataChunks, measureEngine } from "./lib/engines.ts";
import { captureGuestMemory, findGuestImage } from "./lib/guest-memory.ts";
import { median } from "./lib/median.ts";
import { DENSE_MIX, generateMemoryMix } from "./lib/memory-mix.ts";

const run = promisify(execFile);
const MiB = 1 << 20;
const GiB = 1 << 30;

const { values: flags } = parseArgs({
  options: {
    "memory-file": { type: "string" },
    rounds: { type: "string", default: "1" },
    large: { type: "boolean", default: false },
    "level-19": { type: "boolean", default: false },
  },
});
const ROUNDS = Number(flags.rounds);

interface Contender {
  label: string;
  algorithm: "zstd" | "lz4";
  level: number;
  /** The command's level flag, e.g. `-1`. */
  commandLevel: string;
  rounds: number;
}

const ALL_CONTENDERS: Contender[] = [
  { label: "zstd 1", algorithm: "zstd", level: 1, commandLevel: "-1", rounds: ROUNDS },
  { label: "zstd 3", algorithm: "zstd", level: 3, commandLevel: "-3", rounds: ROUNDS },
  { label: "zstd 19", algorithm: "zstd", level: 19, commandLevel: "-19", rounds: 1 },
  { label: "lz4 0", algorithm: "lz4", level: 0, commandLevel: "-1", rounds: ROUNDS },
  { label: "lz4 9", algorithm: "lz4", level: 9, commandLevel: "-9", rounds: ROUNDS },
];
const CONTENDERS = ALL_CONTENDERS.filter((contender) => flags["level-19"] || contender.level !== 19);
/** The levels that also get a per-thread row (the service's defaults; per-thread lz4 9 alone would take minutes). */
const PER_THREAD_LABELS = new Set(["zstd 1", "lz4 0"]);

/** Threads the compression runs on: all (the codec's default, `zstd -T0`) or one (`-T1`; lz4 1.9.4 has no threads). */
type Threads = "all" | "one";

function compressCommand(contender: Contender, threads: Threads, source: string, destination: string): string[] {
  return contender.algorithm === "zstd"
    ? ["zstd", contender.commandLevel, threads === "all" ? "-T0" : "-T1", "-q", "-f", source, "-o", destination]
    : ["lz4", contender.commandLevel, "-q", "-f", source, destination];
}

/** The command as a row names it, e.g. `zstd -1 -T0` or `lz4 -1`. */
const commandName = (contender: Contender, threads: Threads) =>
  `\`${compressCommand(contender, threads, "", "")
    .filter((argument) => argument && !["-q", "-f", "-o"].includes(argument))
    .join(" ")}\``;

function decompressCommand(contender: Contender, source: string, destination: string): string[] {
  return contender.algorithm === "zstd"
    ? ["zstd", "-d", "-q", "-f", source, "-o", destination]
    : ["lz4", "-d", "-q", "-f", source, destination];
}

interface CodecMeasurement {
  seconds: number;
  peakRssBytes: number;
  baselineRssBytes: number;
  result: { compressedBytes?: number; zeroChunkCount?: number; chunkCount?: number; level?: number };
}

/**
 * Before each timed run: remove the previous output (replacing a large file costs as much as writing it, and a
 * restore writes a fresh file), then flush dirty pages so writeback of the previous run does not throttle this one.
 */
async function prepareOutput(output: string): Promise<void> {
  await rm(output, { force: true });
  await run("sync");
}

async function runCodec(request: Record<string, unknown> & { destination: string }): Promise<CodecMeasurement> {
  await prepareOutput(request.destination);
  const { stdout } = await run(
    process.execPath,
    ["--import", "tsx", "bench/lib/codec-run.ts", JSON.stringify(request)],
    { maxBuffer: MiB },
  );
  return JSON.parse(stdout) as CodecMeasurement;
}

/** Wall time of a command plus an fsync of its output (our compression and decompression always fsync theirs). */
async function timeCommand(argv: string[], output: string, fsync: boolean): Promise<number> {
  await prepareOutput(output);
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: "ignore" });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(" ")} exited with ${code}`))));
  });
  if (fsync) {
    const handle = await open(output, "r+");
    await handle.sync();
    await handle.close();
  }
  return (performance.now() - started) / 1000;
}

const rate = (bytes: number, seconds: number) => `${(bytes / seconds / 1e9).toFixed(2)} GB/s`;
const loadAverage = () =>
  loadavg()
    .map((load) => load.toFixed(1))
    .join(" / ");

interface EngineFigures {
  compressSeconds: number[];
  decompressSeconds: number[];
  compressedBytes: number;
  peakRssBytes: number;
  baselineRssBytes: number;
  /** The level the file records (packages: every lz4 level is 0). */
  recordedLevel?: number;
  zeroChunks?: string;
}

/**
 * One round of a backend: compress, decompress (each output fsynced, as the commands' are here), the round trip
 * checked with cmp.
 * `concurrency` 1 is the per-thread figure: one chunk at a time on one pool thread (file I/O overlaps it, as
 * `zstd -T1`'s I/O thread does).
 */
async function measureBackend(
  backend: CodecBackendName,
  contender: Contender,
  source: string,
  workDirectory: string,
  figures: EngineFigures,
  concurrency?: number,
): Promise<void> {
  const compressed = path.join(workDirectory, `${backend}.${contender.algorithm}`);
  const restored = path.join(workDirectory, `${backend}.restored`);
  const request = { backend, algorithm: contender.algorithm, level: contender.level, concurrency };
  const packed = await runCodec({ ...request, operation: "compress", source, destination: compressed });
  const unpacked = await runCodec({
    backend,
    concurrency,
    operation: "decompress",
    source: compressed,
    destination: restored,
  });
  await run("cmp", [source, restored]); // the figures count only if the round trip is exact
  figures.compressSeconds.push(packed.seconds);
  figures.decompressSeconds.push(unpacked.seconds);
  figures.compressedBytes = packed.result.compressedBytes!;
  figures.peakRssBytes = Math.max(figures.peakRssBytes, packed.peakRssBytes, unpacked.peakRssBytes);
  figures.baselineRssBytes = Math.max(figures.baselineRssBytes, packed.baselineRssBytes);
  figures.recordedLevel = packed.result.level;
  figures.zeroChunks = `${packed.result.zeroChunkCount}/${packed.result.chunkCount}`;
  await rm(compressed, { force: true });
  await rm(restored, { force: true });
}

async function measureCommand(
  contender: Contender,
  threads: Threads,
  source: string,
  workDirectory: string,
  figures: EngineFigures,
): Promise<void> {
  const compressed = path.join(workDirectory, `command.${contender.algorithm}`);
  const restored = path.join(workDirectory, "command.restored");
  figures.compressSeconds.push(
    await timeCommand(compressCommand(contender, threads, source, compressed), compressed, true),
  );
  figures.decompressSeconds.push(await timeCommand(decompressCommand(contender, compressed, restored), restored, true));
  figures.compressedBytes = (await stat(compressed)).size;
  await rm(compressed, { force: true });
  await rm(restored, { force: true });
}

/** One row of a file's table: an engine at a contender's level, and the command row it is compared with. */
interface Lane {
  name: string;
  /** The command lane this one's "vs command" columns divide by; none for a command lane itself. */
  versus?: string;
  measure: (figures: EngineFigures) => Promise<void>;
}

/** Both backends against the threaded command; for PER_THREAD_LABELS, native on one thread against the command's. */
function lanesFor(contender: Contender, source: string, workDirectory: string): Lane[] {
  const threaded = commandName(contender, "all");
  const lanes: Lane[] = CODEC_BACKEND_NAMES.map((backend) => ({
    name: backend,
    versus: threaded,
    measure: (figures) => measureBackend(backend, contender, source, workDirectory, figures),
  }));
  lanes.push({
    name: threaded,
    measure: (figures) => measureCommand(contender, "all", source, workDirectory, figures),
  });
  if (PER_THREAD_LABELS.has(contender.label)) {
    const single = commandName(contender, "one");
    lanes.push({
      name: "native, 1 thread",
      versus: single,
      measure: (figures) => measureBackend("native", contender, source, workDirectory, figures, 1),
    });
    if (single !== threaded) {
      lanes.push({
        name: single,
        measure: (figures) => measureCommand(contender, "one", source, workDirectory, figures),
      });
    }
  }
  return lanes;
}

function engineRow(contender: Contender, lane: Lane, figures: EngineFigures, command: EngineFigures, size: number) {
  const compress = median(figures.compressSeconds);
  const decompress = median(figures.decompressSeconds);
  const isCommand = lane.versus === undefined;
  const name =
    isCommand || figures.recordedLevel === contender.level
      ? lane.name
      : `${lane.name} (writes level ${figures.recordedLevel})`;
  const versus = (mine: number, theirs: number) => (isCommand ? "—" : `${(theirs / mine).toFixed(2)}× ${lane.versus}`);
  return (
    `| ${contender.label} | ${name} | ${rate(size, compress)} | ${versus(compress, median(command.compressSeconds))} | ` +
    `${(figures.compressedBytes / MiB).toFixed(1)} MiB | ${(figures.compressedBytes / command.compressedBytes).toFixed(4)} | ` +
    `${rate(size, decompress)} | ${versus(decompress, median(command.decompressSeconds))} | ` +
    `${isCommand ? "—" : `${(figures.peakRssBytes / MiB).toFixed(0)} MiB (${(figures.baselineRssBytes / MiB).toFixed(0)})`} | ` +
    `${figures.zeroChunks ?? "—"} |`
  );
}

async function benchFile(name: string, source: string, workDirectory: string): Promise<void> {
  const { size, blocks } = await stat(source);
  console.log(`\n## ${name}: ${(size / MiB).toFixed(0)} MiB, ${((blocks * 512) / MiB).toFixed(0)} MiB allocated`);
  console.log(`Load average before (1/5/15 min): ${loadAverage()}`);
  console.log(
    "| level | engine | compress | speed vs command | output | size vs command | decompress | speed vs command | peak RSS (node+tsx alone) | zero chunks |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const contender of CONTENDERS) {
    const emptyFigures = (): EngineFigures => ({
      compressSeconds: [],
      decompressSeconds: [],
      compressedBytes: 0,
      peakRssBytes: 0,
      baselineRssBytes: 0,
    });
    const lanes = lanesFor(contender, source, workDirectory);
    const figures = new Map(lanes.map((lane) => [lane.name, emptyFigures()]));
    for (let round = 0; round < contender.rounds; round++) {
      // Interleaved, so a change in the machine's load hits every engine alike.
      for (const lane of lanes) await lane.measure(figures.get(lane.name)!);
    }
    for (const lane of lanes) {
      const mine = figures.get(lane.name)!;
      console.log(engineRow(contender, lane, mine, figures.get(lane.versus ?? lane.name)!, size));
    }
  }
  console.log(`Load average after (1/5/15 min): ${loadAverage()}`);
}

/** Each backend's frame engine alone, in memory: what the backend costs without file I/O. */
async function benchEngines(source: string): Promise<void> {
  const chunks = await dataChunks(source);
  const megabytes = (chunks.length * 2).toFixed(0);
  console.log(
    `\n## Engines alone: the file's first ${chunks.length} non-zero 2 MiB chunks (${megabytes} MiB) in memory, 2 in flight`,
  );
  console.log(`Load average before (1/5/15 min): ${loadAverage()}`);
  console.log("| level | engine | compress | decompress | frames |\n|---|---|---|---|---|");
  for (const contender of CONTENDERS.filter((candidate) => candidate.level !== 19)) {
    for (const backend of CODEC_BACKEND_NAMES) {
      const figures = await measureEngine(backend, contender.algorithm, contender.level, chunks, ROUNDS);
      console.log(
        `| ${contender.label} | ${backend} | ${rate(figures.bytes, figures.compressSeconds)} | ` +
          `${rate(figures.bytes, figures.decompressSeconds)} | ${(figures.frameBytes / MiB).toFixed(1)} MiB |`,
      );
    }
  }
}

async function benchChunkSizes(source: string, workDirectory: string): Promise<void> {
  console.log("| chunk size | zstd 1 compress (native) | output | zero chunks |\n|---|---|---|---|");
  const { size } = await stat(source);
  for (const chunkSize of [MiB, 2 * MiB, 4 * MiB]) {
    const times: number[] = [];
    let last: CodecMeasurement | undefined;
    for (let round = 0; round < ROUNDS; round++) {
      last = await runCodec({
        backend: "native",
        operation: "compress",
        source,
        destination: path.join(workDirectory, "chunks.zst"),
        algorithm: "zstd",
        level: 1,
        chunkSize,
      });
      times.push(last.seconds);
    }
    console.log(
      `| ${chunkSize / MiB} MiB | ${rate(size, median(times))} | ${((last!.result.compressedBytes ?? 0) / MiB).toFixed(2)} MiB | ${last!.result.zeroChunkCount}/${last!.result.chunkCount} |`,
    );
  }
  await rm(path.join(workDirectory, "chunks.zst"), { force: true });
}

/** Peak RSS of each backend compressing a 4 GiB sparse file with zstd 1 (the packages backend reads its holes). */
async function benchPeakRss(workDirectory: string): Promise<void> {
  const source = path.join(workDirectory, "mix-4g.raw");
  const destination = path.join(workDirectory, "mix-4g.zst");
  generateMemoryMix(source, 4 * GiB, 3);
  const { size, blocks } = await stat(source);
  console.log(
    `\n## Peak RSS compressing a 4 GiB sparse mix (${((blocks * 512) / MiB).toFixed(0)} MiB allocated, zstd 1, whole process)`,
  );
  for (const backend of CODEC_BACKEND_NAMES) {
    const measurement = await runCodec({
      backend,
      operation: "compress",
      source,
      destination,
      algorithm: "zstd",
      level: 1,
    });
    console.log(
      `- ${backend}: ${(measurement.peakRssBytes / MiB).toFixed(0)} MiB (node+tsx alone ` +
        `${(measurement.baselineRssBytes / MiB).toFixed(0)} MiB), ${rate(size, measurement.seconds)}, ` +
        `${measurement.result.zeroChunkCount}/${measurement.result.chunkCount} zero chunks`,
    );
  }
  await rm(source, { force: true });
  await rm(destination, { force: true });
}

async function main(): Promise<void> {
  const version = async (command: string) =>
    `${command} ${/v\d+\.\d+\.\d+/.exec((await run(command, ["--version"])).stdout)?.[0] ?? "?"}`;
  const versions = `${await version("zstd")} / ${await version("lz4")}`;
  console.log(
    `# Codec benchmark — ${availableParallelism()} cores, ${process.version}, ${versions}, ${ROUNDS} rounds (median)`,
  );
  console.log(`Load average at the start (1/5/15 min): ${loadAverage()}`);
  const workDirectory = await mkdtemp(path.join(tmpdir(), "snapfleet-bench-codec-"));
  try {
    let memoryFile = flags["memory-file"];
    let memoryName = `real guest memory file ${memoryFile}`;
    const guestImage = memoryFile ? undefined : await findGuestImage();
    if (guestImage) {
      memoryFile = path.join(workDirectory, "guest-memory.raw");
      await captureGuestMemory(guestImage, workDirectory, memoryFile);
      memoryName = "RAM of a 256 MiB busybox guest, captured after boot (QEMU TCG)";
    } else if (!memoryFile) {
      memoryFile = path.join(workDirectory, "mix-256m.raw");
      generateMemoryMix(memoryFile, 256 * MiB, 1);
      memoryName = "generated 256 MiB guest-memory stand-in (60% zero pages, 25% text, 15% random)";
    }
    await benchEngines(memoryFile);
    await benchFile(memoryName, memoryFile, workDirectory);
    const dense = path.join(workDirectory, "dense-256m.raw");
    generateMemoryMix(dense, 256 * MiB, 4, DENSE_MIX);
    await benchFile(
      "generated dense 256 MiB mix (35% text, 35% binary structures, 20% random, 10% zero pages in short runs)",
      dense,
      workDirectory,
    );
    await rm(dense, { force: true });
    console.log("\n## Chunk size (the memory file)");
    await benchChunkSizes(memoryFile, workDirectory);
    if (flags.large) {
      const large = path.join(workDirectory, "mix-1g.raw");
      generateMemoryMix(large, GiB, 2);
      await benchFile("generated 1 GiB mix", large, workDirectory);
      await rm(large, { force: true });
      await benchPeakRss(workDirectory);
    }
  } finally {
    await rm(workDirectory, { recursive: true, force: true });
  }
  console.log(`\nLoad average at the end (1/5/15 min): ${loadAverage()}`);
  // The default run is meant to stay under 5 minutes on an idle 2-core machine: say what this one took.
  console.log(`Took ${Math.round(performance.now() / 1000)} s.`);
}

await main();
