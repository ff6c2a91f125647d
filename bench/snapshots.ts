// npm run bench:snapshots — the snapshot pipeline through the real service (supervisor, Redis, API, workers, QEMU):
// capture downtime against a plain sparse copy of the guest's memory file (guests up to 1 GiB, and a 256 MiB guest
// with a 4 GiB disk holding 1 GiB of data), fork-to-running from uncompressed and compressed snapshots, compression
// time and sizes, and the disk a compressed snapshot uses while 5 forks of it run.
//
// Options: --rounds <n> (default 5), --sizes <MiB,...> (default 256,1024,4096), --level <zstd level> (default 1).
// Prints markdown tables for bench/README.md (## Snapshots), then the two ratio lines (medians of the same run).
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, rmSync, statSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { type RunningService, startService } from "../test/helpers/service.ts";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    sizes: { type: "string", default: "256,1024,4096" },
    level: { type: "string", default: "1" },
  },
});
const ROUNDS = Number(flags.rounds);
const SIZES_MIB = flags.sizes.split(",").map(Number);
const LEVEL = Number(flags.level);

// biome-ignore lint/suspicious/noExplicitAny: bench code reads the API's JSON loosely
type Json = any;

const service: RunningService = await startService({ LOG_LEVEL: "info" });
const stopService = async () => {
  await service.stop("SIGTERM").catch(() => {});
  service.remove();
};
process.once("SIGINT", () => void stopService().then(() => process.exit(130)));

async function call(pathAndQuery: string, init: { method?: string; json?: unknown } = {}, expected = 0) {
  const response = await service.api(pathAndQuery, init);
  const text = await response.text();
  if (expected && response.status !== expected) {
    throw new Error(`${init.method ?? "GET"} ${pathAndQuery}: ${response.status} ${text}`);
  }
  return text ? (JSON.parse(text) as Json) : undefined;
}

const consoleLog = (instanceId: string) => path.join(service.dataDir, "instances", instanceId, "console.log");

function tickLines(instanceId: string): number {
  let text = "";
  try {
    text = readFileSync(consoleLog(instanceId), "utf8");
  } catch {
    return 0;
  }
  return [...text.matchAll(/^tick \d+\r?\n/gm)].length;
}

async function waitForTickAfter(instanceId: string, after: number, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (tickLines(instanceId) <= after) {
    if (Date.now() > deadline) throw new Error(`no tick from ${instanceId} within ${timeoutMs} ms`);
    await sleep(5);
  }
}

async function waitForState(snapshotId: string, state: string, timeoutMs = 600_000): Promise<Json> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const snapshot = await call(`/snapshots/${snapshotId}`, {}, 200);
    if (snapshot.compression_state === state) return snapshot;
    if (snapshot.compression_state === "error") throw new Error(`compression failed: ${snapshot.compression_error}`);
    if (Date.now() > deadline) throw new Error(`snapshot ${snapshotId} not ${state} within ${timeoutMs} ms`);
    await sleep(50);
  }
}

function summary(values: number[]): { median: number; min: number; max: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  const median = sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
  return { median, min: sorted[0]!, max: sorted.at(-1)! };
}

const ms = (value: number) => `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
const range = (values: number[]) => {
  const { median, min, max } = summary(values);
  return values.length > 1 ? `${ms(median)} (${ms(min)}–${ms(max)})` : ms(median);
};
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const sizeLabel = (mib: number) => (mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`);

/** The compression worker's own figure for one snapshot (its "snapshot compressed" log line). */
function compressionLog(snapshotId: string): { ms: number; uncompressedBytes: number; compressedBytes: number } {
  const line = service
    .output()
    .split("\n")
    .findLast((entry) => entry.includes('"snapshot compressed"') && entry.includes(snapshotId));
  if (!line) throw new Error(`no "snapshot compressed" line for ${snapshotId}`);
  return JSON.parse(line);
}

async function bootSource(name: string, mib: number, diskMib = 256): Promise<Json> {
  const instance = await call(
    "/instances",
    { json: { name, size: `${mib}MB`, overlay_size: `${diskMib}MB`, vcpus: 1 } },
    201,
  );
  await waitForTickAfter(instance.id, 1);
  return instance;
}

interface ForkRow {
  guest: string;
  payload: string;
  to201: number[];
  toTick: number[];
  cold?: { to201: number; toTick: number };
}

interface CompressionRow {
  guest: string;
  level: number;
  wallMs: number;
  workerMs: number;
  logical: number;
  stored: number;
  compressed: number;
}

interface DowntimeRow {
  guest: string;
  downtime: number[];
  cpCopy: number[];
  memoryAllocated: number;
}

const downtimeRows: DowntimeRow[] = [];
/** Captures above this guest size are not measured: the goal covers 256 MiB and 1 GiB. */
const DOWNTIME_MAX_MIB = 1024;
let forkDisk: { stored: number; compressed: number } | undefined;
const forkRows: ForkRow[] = [];
const compressionRows: CompressionRow[] = [];
let forkCounter = 0;

/** Capture downtime (pause → device state and memory copy → resume) vs a plain sparse copy of the memory file. */
async function measureDowntime(guest: string, source: Json): Promise<DowntimeRow> {
  const row: DowntimeRow = { guest, downtime: [], cpCopy: [], memoryAllocated: 0 };
  const memoryFile = path.join(service.dataDir, "instances", source.id, "memory.raw");
  const scratch = path.join(service.dataDir, "bench-cp-memory.raw");
  for (let round = 0; round < ROUNDS; round++) {
    const snapshot = await call(`/instances/${source.name}/snapshots`, { json: { kind: "Standby" } }, 201);
    row.downtime.push(snapshot.capture_downtime_ms);
    await call(`/snapshots/${snapshot.id}`, { method: "DELETE" }, 204);
    const started = performance.now();
    execFileSync("cp", ["--sparse=always", memoryFile, scratch]);
    row.cpCopy.push(performance.now() - started);
    row.memoryAllocated = statSync(scratch).blocks * 512;
    rmSync(scratch, { force: true });
    await sleep(500);
  }
  process.stderr.write(`${guest}: downtime ${range(row.downtime)}, cp ${range(row.cpCopy)}\n`);
  return row;
}

/** Disk a compressed snapshot's files (and any cache of it) take while 5 forks of it run. */
async function diskAfterForks(snapshot: Json): Promise<{ stored: number; compressed: number }> {
  const names: string[] = [];
  for (let index = 0; index < 5; index++) {
    const fork = await call(`/snapshots/${snapshot.id}/fork`, { json: { name: `disk-fork-${index}` } }, 201);
    await waitForTickAfter(fork.id, 0);
    names.push(fork.name);
  }
  const allocated = (dir: string) =>
    Number(execFileSync("du", ["-s", "--block-size=1", dir], { encoding: "utf8" }).split("\t")[0]);
  const cacheDir = path.join(service.dataDir, "cache");
  const stored =
    allocated(path.join(service.dataDir, "snapshots", snapshot.id)) -
    allocated(path.join(service.dataDir, "snapshots", snapshot.id, "disk.raw")) +
    (existsSync(cacheDir) ? allocated(cacheDir) : 0);
  const current = await call(`/snapshots/${snapshot.id}`, {}, 200);
  for (const name of names) await call(`/instances/${name}`, { method: "DELETE" }, 204);
  return { stored, compressed: current.compressed_size_bytes };
}

async function forkOnce(snapshotId: string): Promise<{ to201: number; toTick: number }> {
  const name = `fork-${++forkCounter}`;
  const started = performance.now();
  const fork = await call(`/snapshots/${snapshotId}/fork`, { json: { name } }, 201);
  const to201 = performance.now() - started;
  await waitForTickAfter(fork.id, 0);
  const toTick = performance.now() - started;
  await call(`/instances/${name}`, { method: "DELETE" }, 204);
  return { to201, toTick };
}

try {
  for (const mib of SIZES_MIB) {
    const guest = sizeLabel(mib);
    const source = await bootSource(`src-${mib}`, mib);
    process.stderr.write(`${guest} source running\n`);

    if (mib <= DOWNTIME_MAX_MIB) downtimeRows.push(await measureDowntime(guest, source));

    const plain = await call(`/instances/${source.name}/snapshots`, { json: { kind: "Standby" } }, 201);
    const compressStarted = performance.now();
    const packed = await call(
      `/instances/${source.name}/snapshots`,
      { json: { kind: "Standby", compression: { enabled: true, algorithm: "zstd", level: LEVEL } } },
      201,
    );
    const compressed = await waitForState(packed.id, "compressed");
    const wallMs = performance.now() - compressStarted;
    const logged = compressionLog(packed.id);
    compressionRows.push({
      guest,
      level: LEVEL,
      wallMs,
      workerMs: logged.ms,
      logical: compressed.uncompressed_size_bytes,
      // The memory file as stored uncompressed (allocated blocks), from the plain snapshot taken just before.
      stored: statSync(path.join(service.dataDir, "snapshots", plain.id, "memory.raw")).blocks * 512,
      compressed: compressed.compressed_size_bytes,
    });
    // Only the forks run from here on: the source's CPU use would blur their timings.
    await call(`/instances/${source.name}`, { method: "DELETE" }, 204);

    const plainRow: ForkRow = { guest, payload: "uncompressed", to201: [], toTick: [] };
    const packedRow: ForkRow = { guest, payload: `zstd ${LEVEL}`, to201: [], toTick: [] };
    // Each fork here runs alone. The first verifies and mounts the image (cold); the mount is kept after each fork's
    // delete (IMAGE_MOUNT_IDLE_MS), so the rounds after it fork from a verified mount (warm).
    packedRow.cold = await forkOnce(packed.id);
    for (let round = 0; round < ROUNDS; round++) {
      for (const [row, snapshot] of [
        [plainRow, plain],
        [packedRow, packed],
      ] as const) {
        const { to201, toTick } = await forkOnce(snapshot.id);
        row.to201.push(to201);
        row.toTick.push(toTick);
      }
    }
    forkRows.push(plainRow, packedRow);
    if (mib === SIZES_MIB[0]) forkDisk = await diskAfterForks(packed);
    process.stderr.write(`${guest} forks: ${range(plainRow.to201)} / ${range(packedRow.to201)}\n`);
    for (const snapshot of [plain, packed]) await call(`/snapshots/${snapshot.id}`, { method: "DELETE" }, 204);
  }
  // A 256 MiB guest with a 4 GiB disk holding 1 GiB of data: the disk is copied while the guest runs.
  const bigDisk = await bootSource("src-big-disk", 256, 4096);
  const disk = path.join(service.dataDir, "instances", bigDisk.id, "disk.raw");
  execFileSync("dd", ["if=/dev/urandom", `of=${disk}`, "bs=1M", "count=1024", "seek=1024", "conv=notrunc"], {
    stdio: "ignore",
  });
  downtimeRows.push(await measureDowntime("256 MiB, 4 GiB disk with 1 GiB of data", bigDisk));
  await call(`/instances/${bigDisk.name}`, { method: "DELETE" }, 204);
} finally {
  await stopService();
}

const cpu = cpus();
const machine = `${cpu.length} × ${cpu[0]?.model.trim()}, ${Math.round(totalmem() / 2 ** 30)} GiB RAM, ${execFileSync(
  "uname",
  ["-sr"],
  { encoding: "utf8" },
).trim()}, ${execFileSync("qemu-system-x86_64", ["--version"], { encoding: "utf8" }).split("\n")[0]}, load average ${loadavg()
  .map((value) => value.toFixed(1))
  .join(" ")} at the end`;

const out: string[] = [];
out.push(`Command: \`npm run bench:snapshots -- --rounds ${ROUNDS} --sizes ${flags.sizes} --level ${LEVEL}\``);
out.push(`Machine: ${machine}.`, "");
out.push(
  "| guest | capture downtime (`capture_downtime_ms`) | `cp --sparse=always` of memory.raw | memory.raw allocated |",
);
out.push("|---|---|---|---|");
for (const row of downtimeRows) {
  out.push(`| ${row.guest} | ${range(row.downtime)} | ${range(row.cpCopy)} | ${mb(row.memoryAllocated)} |`);
}
out.push("");
out.push("| guest | snapshot | fork → 201 | fork → first tick | first fork → 201 / → tick |");
out.push("|---|---|---|---|---|");
for (const row of forkRows) {
  const cold = row.cold ? `${ms(row.cold.to201)} / ${ms(row.cold.toTick)}` : "—";
  out.push(`| ${row.guest} | ${row.payload} | ${range(row.to201)} | ${range(row.toTick)} | ${cold} |`);
}
out.push("");
out.push(
  "| guest | algorithm | POST → compressed | worker time | RAM size | memory.raw stored (sparse) | compressed | ratio vs stored |",
);
out.push("|---|---|---|---|---|---|---|---|");
for (const row of compressionRows) {
  out.push(
    `| ${row.guest} | zstd ${row.level} | ${ms(row.wallMs)} | ${ms(row.workerMs)} | ${mb(row.logical)} | ${mb(row.stored)} | ${mb(row.compressed)} | ${(row.stored / row.compressed).toFixed(1)}× |`,
  );
}
if (forkDisk) {
  out.push(
    "",
    `Disk used by the compressed ${sizeLabel(SIZES_MIB[0]!)} snapshot's memory (image, checksums, any cache) with 5 forks running: ${mb(forkDisk.stored)} for a compressed size of ${mb(forkDisk.compressed)} (${(forkDisk.stored / forkDisk.compressed).toFixed(2)}×).`,
  );
}
const mounts = service
  .output()
  .split("\n")
  .filter((line) => line.includes('"snapshot image verified and mounted"'))
  .map((line) => JSON.parse(line) as { verifyMs: number; mountMs: number });
if (mounts.length > 0) {
  out.push(
    "",
    `Image checks and mounts on the way to a compressed fork's 201 (${mounts.length}, all sizes): verify ${range(mounts.map((m) => m.verifyMs))}, mount ${range(mounts.map((m) => m.mountMs))}.`,
  );
}
const ratio = (numerator: number[], denominator: number[]) =>
  (summary(numerator).median / summary(denominator).median).toFixed(2);
const forkRatios = SIZES_MIB.map((mib, index) => {
  const [plainRow, packedRow] = [forkRows[2 * index]!, forkRows[2 * index + 1]!];
  return `${ratio(packedRow.to201, plainRow.to201)} (${sizeLabel(mib)})`;
});
const downtimeRatios = downtimeRows
  .filter((row) => !row.guest.includes("disk"))
  .map((row) => `${ratio(row.downtime, row.cpCopy)} (${row.guest})`);
out.push(
  "",
  `fork compressed/raw ratio: ${forkRatios.join(" ")}`,
  `capture downtime/cp ratio: ${downtimeRatios.join(" ")}`,
);
process.stdout.write(`${out.join("\n")}\n`);
