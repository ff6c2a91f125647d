// npm run bench:codec — our chunked codec against the zstd and lz4 commands on guest-memory-like files.
//
// The memory file: --memory-file <path>, else the RAM of a busybox guest booted here (needs qemu-system-x86 and the
// image from scripts/build-image.ts), else a generated 256 MiB stand-in.
// Options: --rounds <n> (default 3; zstd level 19 runs once), --skip-large (no 1 GiB and 4 GiB files),
// --skip-level-19 (it takes minutes on the 1 GiB file).
import { execFile, spawn } from "node:child_process";
import { mkdtemp, open, rm, stat } from "node:fs/promises";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { parseArgs, promisify } from "node:util";
import { captureGuestMemory, findGuestImage } from "./lib/guest-memory.ts";
import { generateMemoryMix } from "./lib/memory-mix.ts";

const run = promisify(execFile);
const MiB = 1 << 20;
const GiB = 1 << 30;

const { values: flags } = parseArgs({
  options: {
    "memory-file": { type: "string" },
    rounds: { type: "string", default: "3" },
    "skip-large": { type: "boolean", default: false },
    "skip-level-19": { type: "boolean", default: false },
  },
});
const ROUNDS = Number(flags.rounds);

interface Contender {
  label: string;
  algorithm: "zstd" | "lz4";
  level: number;
  command: (source: string, destination: string) => string[];
  decodeCommand: (source: string, destination: string) => string[];
  rounds: number;
}

const ALL_CONTENDERS: Contender[] = [
  {
    label: "zstd 1",
    algorithm: "zstd",
    level: 1,
    command: (source, destination) => ["zstd", "-1", "-T0", "-q", "-f", source, "-o", destination],
    decodeCommand: (source, destination) => ["zstd", "-d", "-q", "-f", source, "-o", destination],
    rounds: ROUNDS,
  },
  {
    label: "lz4",
    algorithm: "lz4",
    level: 0,
    command: (source, destination) => ["lz4", "-1", "-q", "-f", source, destination],
    decodeCommand: (source, destination) => ["lz4", "-d", "-q", "-f", source, destination],
    rounds: ROUNDS,
  },
  {
    label: "zstd 3",
    algorithm: "zstd",
    level: 3,
    command: (source, destination) => ["zstd", "-3", "-T0", "-q", "-f", source, "-o", destination],
    decodeCommand: (source, destination) => ["zstd", "-d", "-q", "-f", source, "-o", destination],
    rounds: ROUNDS,
  },
  {
    label: "zstd 19",
    algorithm: "zstd",
    level: 19,
    command: (source, destination) => ["zstd", "-19", "-T0", "-q", "-f", source, "-o", destination],
    decodeCommand: (source, destination) => ["zstd", "-d", "-q", "-f", source, "-o", destination],
    rounds: 1,
  },
];
const CONTENDERS = ALL_CONTENDERS.filter((contender) => !(flags["skip-level-19"] && contender.level === 19));

interface CodecMeasurement {
  seconds: number;
  peakRssBytes: number;
  baselineRssBytes: number;
  result: { compressedBytes?: number; zeroChunkCount?: number; chunkCount?: number };
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

/** Wall time of a command, and of the command plus an fsync of its output (our codec always fsyncs). */
async function timeCommand(argv: string[], output: string): Promise<{ seconds: number; withFsync: number }> {
  await prepareOutput(output);
  const started = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: "ignore" });
    child.on("error", reject);
    child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(" ")} exited with ${code}`))));
  });
  const seconds = (performance.now() - started) / 1000;
  const handle = await open(output, "r+");
  await handle.sync();
  await handle.close();
  return { seconds, withFsync: (performance.now() - started) / 1000 };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const rate = (bytes: number, seconds: number) => `${(bytes / seconds / 1e9).toFixed(2)} GB/s`;
const ratio = (value: number) => `${value.toFixed(2)}×`;

async function benchFile(name: string, source: string, workDirectory: string): Promise<string[]> {
  const { size, blocks } = await stat(source);
  console.log(`\n## ${name}: ${(size / MiB).toFixed(0)} MiB, ${((blocks * 512) / MiB).toFixed(0)} MiB allocated`);
  const rows: string[] = [
    "| codec | ours compress | command | throughput ours/command (vs command+fsync) | size ours/command | ours peak RSS | ours decompress (with fsync) | command decompress | zero chunks |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  console.log(rows.join("\n"));
  for (const contender of CONTENDERS) {
    const ours = path.join(workDirectory, `ours.${contender.algorithm}`);
    const theirs = path.join(workDirectory, `theirs.${contender.algorithm}`);
    const restored = path.join(workDirectory, "restored.raw");
    const compressTimes: number[] = [];
    const commandTimes: number[] = [];
    const commandFsyncTimes: number[] = [];
    const decompressTimes: number[] = [];
    const durableDecompressTimes: number[] = [];
    const commandDecodeTimes: number[] = [];
    let last: CodecMeasurement | undefined;
    let peakRss = 0;
    let baselineRss = 0;
    for (let round = 0; round < contender.rounds; round++) {
      last = await runCodec({
        operation: "compress",
        source,
        destination: ours,
        algorithm: contender.algorithm,
        level: contender.level,
      });
      compressTimes.push(last.seconds);
      peakRss = Math.max(peakRss, last.peakRssBytes);
      baselineRss = Math.max(baselineRss, last.baselineRssBytes);
      const command = await timeCommand(contender.command(source, theirs), theirs);
      commandTimes.push(command.seconds);
      commandFsyncTimes.push(command.withFsync);
      const decoded = await runCodec({ operation: "decompress", source: ours, destination: restored, durable: false });
      decompressTimes.push(decoded.seconds);
      const durable = await runCodec({ operation: "decompress", source: ours, destination: restored, durable: true });
      durableDecompressTimes.push(durable.seconds);
      commandDecodeTimes.push((await timeCommand(contender.decodeCommand(theirs, restored), restored)).seconds);
    }
    await runCodec({ operation: "decompress", source: ours, destination: restored, durable: false });
    await run("cmp", [source, restored]); // the figures count only if the round trip is exact
    const oursBytes = last!.result.compressedBytes!;
    const theirBytes = (await stat(theirs)).size;
    const ours1 = median(compressTimes);
    rows.push(
      `| ${contender.label} | ${rate(size, ours1)} | ${rate(size, median(commandTimes))} | ` +
        `${ratio(median(commandTimes) / ours1)} (${ratio(median(commandFsyncTimes) / ours1)}) | ` +
        `${(oursBytes / theirBytes).toFixed(4)} (${(oursBytes / MiB).toFixed(1)} / ${(theirBytes / MiB).toFixed(1)} MiB) | ` +
        `${(peakRss / MiB).toFixed(0)} MiB (node+tsx alone ${(baselineRss / MiB).toFixed(0)}) | ${rate(size, median(decompressTimes))} (${rate(size, median(durableDecompressTimes))}) | ${rate(size, median(commandDecodeTimes))} | ` +
        `${last!.result.zeroChunkCount}/${last!.result.chunkCount} |`,
    );
    console.log(rows.at(-1));
    await rm(ours, { force: true });
    await rm(theirs, { force: true });
    await rm(restored, { force: true });
  }
  return rows;
}

async function benchChunkSizes(source: string, workDirectory: string): Promise<string[]> {
  const rows = ["| chunk size | zstd 1 compress | output | zero chunks |", "|---|---|---|---|"];
  console.log(rows.join("\n"));
  const { size } = await stat(source);
  for (const chunkSize of [MiB, 2 * MiB, 4 * MiB]) {
    const times: number[] = [];
    let last: CodecMeasurement | undefined;
    for (let round = 0; round < ROUNDS; round++) {
      last = await runCodec({
        operation: "compress",
        source,
        destination: path.join(workDirectory, "chunks.zst"),
        algorithm: "zstd",
        level: 1,
        chunkSize,
      });
      times.push(last.seconds);
    }
    rows.push(
      `| ${chunkSize / MiB} MiB | ${rate(size, median(times))} | ${((last!.result.compressedBytes ?? 0) / MiB).toFixed(2)} MiB | ${last!.result.zeroChunkCount}/${last!.result.chunkCount} |`,
    );
    console.log(rows.at(-1));
  }
  await rm(path.join(workDirectory, "chunks.zst"), { force: true });
  return rows;
}

async function benchPeakRss(workDirectory: string): Promise<string> {
  const source = path.join(workDirectory, "mix-4g.raw");
  const destination = path.join(workDirectory, "mix-4g.zst");
  generateMemoryMix(source, 4 * GiB, 3);
  const { size, blocks } = await stat(source);
  const measurement = await runCodec({ operation: "compress", source, destination, algorithm: "zstd", level: 1 });
  await rm(source, { force: true });
  await rm(destination, { force: true });
  return (
    `Peak RSS compressing a 4 GiB sparse mix (${((blocks * 512) / MiB).toFixed(0)} MiB allocated, zstd 1, whole ` +
    `process): ${(measurement.peakRssBytes / MiB).toFixed(0)} MiB (node+tsx alone ` +
    `${(measurement.baselineRssBytes / MiB).toFixed(0)} MiB), ${rate(size, measurement.seconds)}, ` +
    `${measurement.result.zeroChunkCount}/${measurement.result.chunkCount} zero chunks`
  );
}

async function main(): Promise<void> {
  const versions = `${(await run("zstd", ["--version"])).stdout.trim()} / ${(await run("lz4", ["--version"])).stdout.trim()}`;
  console.log(
    `# Codec benchmark — ${availableParallelism()} cores, ${process.version}, ${versions}, ${ROUNDS} rounds (median)`,
  );
  console.log(
    `Load average at the start (1/5/15 min): ${loadavg()
      .map((load) => load.toFixed(1))
      .join(" / ")}`,
  );
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
    await benchFile(memoryName, memoryFile, workDirectory);
    console.log("\n## Chunk size (same file)");
    await benchChunkSizes(memoryFile, workDirectory);
    if (!flags["skip-large"]) {
      const large = path.join(workDirectory, "mix-1g.raw");
      generateMemoryMix(large, GiB, 2);
      await benchFile("generated 1 GiB mix", large, workDirectory);
      await rm(large, { force: true });
      console.log(`\n${await benchPeakRss(workDirectory)}`);
    }
  } finally {
    await rm(workDirectory, { recursive: true, force: true });
  }
  console.log(
    `\nLoad average at the end (1/5/15 min): ${loadavg()
      .map((load) => load.toFixed(1))
      .join(" / ")}`,
  );
}

await main();
