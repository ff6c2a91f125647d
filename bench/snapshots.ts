// npm run bench:snapshots — the snapshot pipeline through the real service (supervisor, Redis, API, workers, QEMU):
// capture downtime against a plain sparse copy of the guest's memory file (guests up to 1 GiB, and a 256 MiB guest
// with a 4 GiB disk holding 1 GiB of data), fork-to-running from uncompressed and compressed snapshots, compression
// time and sizes, and the disk a compressed snapshot uses while 5 forks of it run.
//
// Options: --rounds <n> (default 5), --sizes <MiB,...> (default 256,1024,4096), --level <zstd level> (default 1),
// --fill <percent,...> (default 0,70): each size runs as an idle guest (0) and as a dense one whose RAM is filled
// that far at boot with the image's documented mix (`memory_load.fill_percent`, scripts/build-image.ts).
// --data-fs <host|xfs|btrfs|ext4> (default host): the service's data directory on the file system it is on, or on
// a file system of that type made for the run on a loop device (root only; XFS with reflink).
// --fanout <n> (default 16, 0: none): that many concurrent forks of one compressed snapshot of a 256 MiB guest.
// Issue 22's lines come last: the pause of a 4 GiB guest with 70 % of its RAM used, dirtying 16 MiB/s, against an
// idle 256 MiB guest's (both measured here, alternately); the fan-out's wall time against N × one fork's CPU time /
// cores (CPU time: the machine's busy time, /proc/stat, while one fork runs alone from POST to its first tick); and
// a snapshot's disk copy's allocated bytes against its source disk's.
// Prints markdown tables for bench/README.md (## Snapshots), then the ratio lines (medians of the same run) and the
// goal line. The goal's fork figure is the first fork of a fresh snapshot (the one every fan-out starts with); warm
// forks (image verified and mounted by an earlier fork) are printed beside it. Every snapshot is captured right after
// a tick line appears on the source's console, so forks of either kind resume at the same point of the guest's
// `sleep 1` and "fork → first tick" compares like with like.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { copySparseIntoStaging } from "../shared/hypervisor/sparse-copy.ts";
import { killProcessesUsing, type RunningService, startService, unmountUnder } from "../test/helpers/service.ts";
import { spread } from "./lib/median.ts";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "5" },
    sizes: { type: "string", default: "256,1024,4096" },
    level: { type: "string", default: "1" },
    fill: { type: "string", default: "0,70" },
    "data-fs": { type: "string", default: "host" },
    fanout: { type: "string", default: "16" },
  },
});
const DATA_FS = flags["data-fs"];
if (!["host", "xfs", "btrfs", "ext4"].includes(DATA_FS)) throw new Error("--data-fs: host, xfs, btrfs or ext4");
const FANOUT = Number(flags.fanout);
/** Issue 22's dense guest: 4 GiB, 70 % of RAM used, 16 MiB/s rewritten while it runs. */
const DENSE_GOAL = { mib: 4096, fill: 70, dirty: 16 };
const DENSE_GOAL_RATIO = 1.5;
const FANOUT_GOAL_RATIO = 1.3;
/** The fan-out's snapshot is requested this long after a tick (see measureFanout). */
const FANOUT_PHASE_MS = 700;
const ALLOCATION_GOAL_RATIO = 1.01;
const ROUNDS = Number(flags.rounds);
const SIZES_MIB = flags.sizes.split(",").map(Number);
const LEVEL = Number(flags.level);
const FILLS = flags.fill.split(",").map(Number);
/** Every guest in the order measured: each size idle, then each size dense. */
const GUESTS = FILLS.flatMap((fill) => SIZES_MIB.map((mib) => ({ mib, fill })));
const guestLabel = ({ mib, fill }: { mib: number; fill: number }) =>
  fill > 0 ? `${sizeLabel(mib)}, ${fill}% of RAM used` : sizeLabel(mib);
/** Issue 12's goals: compressed fork → 201 and capture downtime each within this factor of their baseline. */
const GOAL_RATIO = 1.2;

// biome-ignore lint/suspicious/noExplicitAny: bench code reads the API's JSON loosely
type Json = any;

/** A file system of type DATA_FS on a loop device, for the data directory; undefined: the host's own. */
const dataFs = DATA_FS === "host" ? undefined : makeDataFs(DATA_FS);
// A loaded machine starts the service slowly; the bench's figures say how loaded it was.
const service: RunningService = await startService(
  { LOG_LEVEL: "info", ...(dataFs ? { DATA_DIR: dataFs.mountPoint } : {}) },
  { readyTimeoutMs: 300_000 },
);
const stopService = async () => {
  await service.stop("SIGTERM").catch(() => {});
  killProcessesUsing(service.dataDir); // forks' VMs outlive the service by design
  unmountUnder(service.dataDir);
  service.remove();
  dataFs?.remove();
};

function makeDataFs(type: string): { mountPoint: string; remove: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), `snapfleet-bench-${type}-`));
  const image = path.join(dir, "fs.img");
  const mountPoint = path.join(dir, "data");
  mkdirSync(mountPoint);
  execFileSync("truncate", ["-s", "48G", image]);
  const mkfs: Record<string, string[]> = {
    xfs: ["mkfs.xfs", "-q", "-m", "reflink=1", image],
    btrfs: ["mkfs.btrfs", "-q", image],
    ext4: ["mkfs.ext4", "-q", "-F", image],
  };
  const [command, ...args] = mkfs[type]!;
  execFileSync(command!, args);
  execFileSync("mount", ["-o", "loop", image, mountPoint]);
  return {
    mountPoint,
    remove: () => {
      execFileSync("umount", [mountPoint], { stdio: "ignore" });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
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

const ms = (value: number) => `${value < 10 ? value.toFixed(1) : Math.round(value)} ms`;
const range = (values: number[]) => {
  const { median, min, max } = spread(values);
  return values.length > 1 ? `${ms(median)} (${ms(min)}–${ms(max)})` : ms(median);
};
const kib = (bytes: number) => `${Math.round(bytes / 1024)} KiB`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;
const sizeLabel = (mib: number) => (mib >= 1024 ? `${mib / 1024} GiB` : `${mib} MiB`);

/**
 * The compression worker's own figure for one snapshot (its "snapshot compressed" log line, which it may write just
 * after the API shows the snapshot compressed).
 */
async function compressionLog(
  snapshotId: string,
): Promise<{ ms: number; uncompressedBytes: number; compressedBytes: number }> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const line = service
      .output()
      .split("\n")
      .findLast((entry) => entry.includes('"snapshot compressed"') && entry.includes(snapshotId));
    if (line) return JSON.parse(line);
    if (Date.now() > deadline) throw new Error(`no "snapshot compressed" line for ${snapshotId}`);
    await sleep(50);
  }
}

async function bootSource(name: string, mib: number, diskMib = 256, fill = 0, dirty = 0): Promise<Json> {
  const memoryLoad = fill > 0 ? { memory_load: { fill_percent: fill, dirty_mib_per_second: dirty } } : {};
  const instance = await call(
    "/instances",
    { json: { name, size: `${mib}MB`, overlay_size: `${diskMib}MB`, vcpus: 1, ...memoryLoad } },
    201,
  );
  await waitForTickAfter(instance.id, 1, 600_000); // a dense guest fills its RAM first: a minute per 4 GiB under TCG
  return instance;
}

/**
 * A Standby snapshot of a running guest, requested as soon as a new tick line appears on its console: every snapshot
 * is then taken at the same point of the guest's `sleep 1`, so a fork's first tick comes after the same remaining
 * sleep whatever the snapshot's kind. `phaseMs`: from the tick line seen to the 201 (the capture is inside it).
 */
async function captureAfterTick(
  source: Json,
  body: Json,
  afterTickMs = 0,
): Promise<{ snapshot: Json; requestedAt: number; phaseMs: number }> {
  await waitForTickAfter(source.id, tickLines(source.id));
  if (afterTickMs > 0) await sleep(afterTickMs);
  const requestedAt = performance.now();
  const snapshot = await call(`/instances/${source.name}/snapshots`, { json: { kind: "Standby", ...body } }, 201);
  return { snapshot, requestedAt, phaseMs: performance.now() - requestedAt };
}

interface ForkTimes {
  to201: number[];
  toTick: number[];
}

interface ForkRow {
  guest: string;
  payload: string;
  /** Each fork the first of a fresh snapshot: for a compressed one, the image is verified and mounted on the way. */
  first: ForkTimes;
  /** Later forks of one snapshot: the image mount (and the pages earlier forks decoded) kept from the first. */
  warm: ForkTimes;
}

interface CompressionRow {
  guest: string;
  level: number;
  wallMs: number[];
  workerMs: number[];
  logical: number;
  stored: number;
  compressed: number;
}

interface DowntimeRow {
  guest: string;
  downtime: number[];
  sparseCopy: number[];
  memoryAllocated: number;
}

const downtimeRows: DowntimeRow[] = [];
/** Captures above this guest size are not measured: the goal covers 256 MiB and 1 GiB. */
const DOWNTIME_MAX_MIB = 1024;
let forkDisk: { stored: number; compressed: number } | undefined;
const forkRows: ForkRow[] = [];
const compressionRows: CompressionRow[] = [];
let forkCounter = 0;

/**
 * Capture downtime (pause → device state and memory copy → resume) against the memory copy alone. Both sides are
 * timed the same way: the worker times its pause in its process around `copySparseIntoStaging` (and the rest of the
 * pause); this process times `copySparseIntoStaging` of the same file, in process, around the same call (cp's spawn
 * included on both sides; neither flushes: the staging commit does, after the pause).
 */
async function measureDowntime(guest: string, source: Json): Promise<DowntimeRow> {
  const row: DowntimeRow = { guest, downtime: [], sparseCopy: [], memoryAllocated: 0 };
  const memoryFile = path.join(service.dataDir, "instances", source.id, "memory.raw");
  const scratch = path.join(service.dataDir, "bench-cp-memory.raw");
  for (let round = 0; round < ROUNDS; round++) {
    const snapshot = await call(`/instances/${source.name}/snapshots`, { json: { kind: "Standby" } }, 201);
    row.downtime.push(snapshot.capture_downtime_ms);
    await call(`/snapshots/${snapshot.id}`, { method: "DELETE" }, 204);
    const started = performance.now();
    const copy = await copySparseIntoStaging(memoryFile, scratch);
    row.sparseCopy.push(performance.now() - started);
    row.memoryAllocated = copy.allocatedBytes;
    rmSync(scratch, { force: true });
    await sleep(500);
  }
  process.stderr.write(`${guest}: downtime ${range(row.downtime)}, sparse copy ${range(row.sparseCopy)}\n`);
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

interface AllocationRow {
  guest: string;
  source: number;
  copy: number;
}
const allocationRows: AllocationRow[] = [];
const goalPauses = { idle: [] as number[], dense: [] as number[] };
interface Fanout {
  n: number;
  oneForkCpuMs: number;
  oneForkWallMs: number;
  wallMs: number;
  /** The machine's busy time over the fan-out (all cores): what it did, against N × one fork's. */
  cpuMs: number;
  to201: number[];
  toTick: number[];
  rssMiB: number[];
  pssMiB: number[];
}
let fanout: Fanout | undefined;

/** Allocated bytes (`du`), not apparent sizes. */
const allocated = (file: string) => statSync(file).blocks * 512;

/** A Standby snapshot's disk copy against its source's disk, both as allocated on disk, right after the capture. */
async function diskAllocation(guest: string, source: Json): Promise<AllocationRow> {
  const snapshot = await call(`/instances/${source.name}/snapshots`, { json: { kind: "Standby" } }, 201);
  const row = {
    guest,
    source: allocated(path.join(service.dataDir, "instances", source.id, "disk.raw")),
    copy: allocated(path.join(service.dataDir, "snapshots", snapshot.id, "disk.raw")),
  };
  await call(`/snapshots/${snapshot.id}`, { method: "DELETE" }, 204);
  return row;
}

const CLOCK_TICKS_PER_SECOND = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }));

/** The machine's busy CPU time so far (all cores, ms), from /proc/stat. */
function busyCpuMs(): number {
  const [, ...fields] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq, steal] = fields.map(Number) as number[];
  const ticks = user! + nice! + system! + irq! + softirq! + steal!;
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND;
}

/** RSS and PSS (MiB) of the QEMU process running instance `id`. */
function memoryOfFork(id: string): { rss: number; pss: number } {
  const pid = readFileSync(path.join(service.dataDir, "instances", id, "qemu.pid"), "utf8").trim();
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(rollup)?.[1] ?? 0);
  return { rss: kib("Rss") / 1024, pss: kib("Pss") / 1024 };
}

/**
 * One fork alone (its CPU time: the machine's busy time from POST to its first tick), then `n` at once: wall time
 * until all have ticked, each one's → 201 and → first tick, and each QEMU's RSS and PSS while all run.
 */
async function measureFanout(source: Json, n: number): Promise<Fanout> {
  // Captured late in the guest's `sleep 1` (FANOUT_PHASE_MS after a tick): every fork resumes with about 0.2 s of
  // that sleep left, rather than 0.9 s. The sleep is guest time, not fork work: it adds to one fork's wall time and
  // to the fan-out's once, and the ratio compares the fan-out's wall time with CPU time only.
  const { snapshot } = await captureAfterTick(
    source,
    { compression: { enabled: true, algorithm: "zstd", level: LEVEL } },
    FANOUT_PHASE_MS,
  );
  await waitForState(snapshot.id, "compressed");
  // Warm: the image verified and mounted, as for every fork after a snapshot's first.
  const warm = await call(`/snapshots/${snapshot.id}/fork`, { json: { name: "fanout-warm" } }, 201);
  await waitForTickAfter(warm.id, 0);
  await call(`/instances/${warm.name}`, { method: "DELETE" }, 204);
  await sleep(2_000);
  const cpuBefore = busyCpuMs();
  const oneStarted = performance.now();
  const one = await call(`/snapshots/${snapshot.id}/fork`, { json: { name: "fanout-one" } }, 201);
  await waitForTickAfter(one.id, 0);
  const oneForkWallMs = performance.now() - oneStarted;
  const oneForkCpuMs = busyCpuMs() - cpuBefore;
  await call(`/instances/${one.name}`, { method: "DELETE" }, 204);
  await sleep(2_000);

  const result: Fanout = {
    n,
    oneForkCpuMs,
    oneForkWallMs,
    wallMs: 0,
    cpuMs: 0,
    to201: [],
    toTick: [],
    rssMiB: [],
    pssMiB: [],
  };
  const fanoutCpuBefore = busyCpuMs();
  const started = performance.now();
  const forks = await Promise.all(
    Array.from({ length: n }, async (_, index) => {
      const fork = await call(`/snapshots/${snapshot.id}/fork`, { json: { name: `fanout-${index}` } }, 201);
      result.to201.push(performance.now() - started);
      await waitForTickAfter(fork.id, 0, 600_000);
      result.toTick.push(performance.now() - started);
      return fork;
    }),
  );
  result.wallMs = performance.now() - started;
  result.cpuMs = busyCpuMs() - fanoutCpuBefore;
  for (const fork of forks) {
    const { rss, pss } = memoryOfFork(fork.id);
    result.rssMiB.push(rss);
    result.pssMiB.push(pss);
  }
  for (const fork of forks) await call(`/instances/${fork.name}`, { method: "DELETE" }, 204);
  await call(`/snapshots/${snapshot.id}`, { method: "DELETE" }, 204);
  process.stderr.write(
    `fan-out of ${n}: ${ms(result.wallMs)} (one fork alone: ${ms(oneForkWallMs)}, CPU ${ms(oneForkCpuMs)})\n`,
  );
  return result;
}

async function forkOnce(snapshotId: string, times: ForkTimes): Promise<void> {
  const name = `fork-${++forkCounter}`;
  const started = performance.now();
  const fork = await call(`/snapshots/${snapshotId}/fork`, { json: { name } }, 201);
  times.to201.push(performance.now() - started);
  await waitForTickAfter(fork.id, 0);
  times.toTick.push(performance.now() - started);
  await call(`/instances/${name}`, { method: "DELETE" }, 204);
}

/** ROUNDS pairs of snapshots (uncompressed, compressed), each captured right after a tick, compressed one by one. */
async function snapshotPairs(guest: string, source: Json): Promise<Array<{ plain: Json; packed: Json }>> {
  const row: CompressionRow = {
    guest,
    level: LEVEL,
    wallMs: [],
    workerMs: [],
    logical: 0,
    stored: 0,
    compressed: 0,
  };
  const pairs: Array<{ plain: Json; packed: Json }> = [];
  const phases: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const plain = await captureAfterTick(source, {});
    const packed = await captureAfterTick(source, {
      compression: { enabled: true, algorithm: "zstd", level: LEVEL },
    });
    phases.push(plain.phaseMs, packed.phaseMs);
    const compressed = await waitForState(packed.snapshot.id, "compressed");
    row.wallMs.push(performance.now() - packed.requestedAt);
    row.workerMs.push((await compressionLog(packed.snapshot.id)).ms);
    row.logical = compressed.uncompressed_size_bytes;
    // The memory file as stored uncompressed (allocated blocks), from the plain snapshot of the same pair.
    row.stored = statSync(path.join(service.dataDir, "snapshots", plain.snapshot.id, "memory.raw")).blocks * 512;
    row.compressed = compressed.compressed_size_bytes;
    pairs.push({ plain: plain.snapshot, packed: compressed });
  }
  compressionRows.push(row);
  process.stderr.write(`${guest}: snapshots captured ${range(phases)} after a tick line (to their 201)\n`);
  return pairs;
}

try {
  for (const { mib, fill } of GUESTS) {
    const guest = guestLabel({ mib, fill });
    const source = await bootSource(`src-${mib}-${fill}`, mib, 256, fill);
    process.stderr.write(`${guest} source running\n`);

    if (mib <= DOWNTIME_MAX_MIB) downtimeRows.push(await measureDowntime(guest, source));

    const pairs = await snapshotPairs(guest, source);
    // Only the forks run from here on: the source's CPU use would blur their timings.
    await call(`/instances/${source.name}`, { method: "DELETE" }, 204);

    const plainRow: ForkRow = {
      guest,
      payload: "uncompressed",
      first: { to201: [], toTick: [] },
      warm: { to201: [], toTick: [] },
    };
    const packedRow: ForkRow = {
      guest,
      payload: `zstd ${LEVEL}`,
      first: { to201: [], toTick: [] },
      warm: { to201: [], toTick: [] },
    };
    // Each fork runs alone. First the first fork of every pair (a compressed one verifies and mounts its image);
    // the mount is kept after a fork's delete (IMAGE_MOUNT_IDLE_MS), so the rounds after fork the last pair warm.
    for (const { plain, packed } of pairs) {
      await forkOnce(plain.id, plainRow.first);
      await forkOnce(packed.id, packedRow.first);
    }
    const { plain, packed } = pairs.at(-1)!;
    for (let round = 0; round < ROUNDS; round++) {
      await forkOnce(plain.id, plainRow.warm);
      await forkOnce(packed.id, packedRow.warm);
    }
    forkRows.push(plainRow, packedRow);
    if (mib === SIZES_MIB[0] && fill === FILLS[0]) forkDisk = await diskAfterForks(packed);
    process.stderr.write(
      `${guest} forks → 201, uncompressed / compressed: first ${range(plainRow.first.to201)} / ${range(packedRow.first.to201)}, warm ${range(plainRow.warm.to201)} / ${range(packedRow.warm.to201)}\n`,
    );
    for (const pair of pairs) {
      for (const snapshot of [pair.plain, pair.packed]) {
        await call(`/snapshots/${snapshot.id}`, { method: "DELETE" }, 204);
      }
    }
  }
  // A 256 MiB guest with a 4 GiB disk holding 1 GiB of data: the disk is copied while the guest runs.
  const bigDisk = await bootSource("src-big-disk", 256, 4096);
  const disk = path.join(service.dataDir, "instances", bigDisk.id, "disk.raw");
  execFileSync("dd", ["if=/dev/urandom", `of=${disk}`, "bs=1M", "count=1024", "seek=1024", "conv=notrunc"], {
    stdio: "ignore",
  });
  downtimeRows.push(await measureDowntime("256 MiB, 4 GiB disk with 1 GiB of data", bigDisk));
  allocationRows.push(await diskAllocation("256 MiB, 4 GiB disk with 1 GiB of data", bigDisk));
  await call(`/instances/${bigDisk.name}`, { method: "DELETE" }, 204);

  // Issue 22: the dense guest's pause against an idle 256 MiB guest's, alternately, on the same run.
  const idle = await bootSource("goal-idle", 256);
  allocationRows.unshift(await diskAllocation("256 MiB, 256 MiB disk", idle));
  const dense = await bootSource("goal-dense", DENSE_GOAL.mib, 256, DENSE_GOAL.fill, DENSE_GOAL.dirty);
  process.stderr.write("dense goal guest running\n");
  for (let round = 0; round < ROUNDS; round++) {
    for (const [source, into] of [
      [idle, goalPauses.idle],
      [dense, goalPauses.dense],
    ] as const) {
      const snapshot = await call(`/instances/${source.name}/snapshots`, { json: { kind: "Standby" } }, 201);
      into.push(snapshot.capture_downtime_ms);
      await call(`/snapshots/${snapshot.id}`, { method: "DELETE" }, 204);
    }
  }
  process.stderr.write(`goal pauses: idle ${range(goalPauses.idle)}, dense ${range(goalPauses.dense)}\n`);
  await call(`/instances/${dense.name}`, { method: "DELETE" }, 204);
  if (FANOUT > 0) fanout = await measureFanout(idle, FANOUT);
  await call(`/instances/${idle.name}`, { method: "DELETE" }, 204);
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
out.push(
  `Command: \`npm run bench:snapshots -- --rounds ${ROUNDS} --sizes ${flags.sizes} --level ${LEVEL} --fill ${flags.fill} --data-fs ${DATA_FS} --fanout ${FANOUT}\``,
);
out.push(`Machine: ${machine}.`, "");
out.push(
  "| guest | capture downtime (`capture_downtime_ms`, the worker's pause timer) | sparse copy of memory.raw (`copySparseIntoStaging`, timed in process) | memory.raw allocated |",
);
out.push("|---|---|---|---|");
for (const row of downtimeRows) {
  out.push(`| ${row.guest} | ${range(row.downtime)} | ${range(row.sparseCopy)} | ${mb(row.memoryAllocated)} |`);
}
out.push("");
out.push(
  "| guest | snapshot | first fork → 201 | first fork → first tick | warm fork → 201 | warm fork → first tick |",
);
out.push("|---|---|---|---|---|---|");
for (const row of forkRows) {
  out.push(
    `| ${row.guest} | ${row.payload} | ${range(row.first.to201)} | ${range(row.first.toTick)} | ${range(row.warm.to201)} | ${range(row.warm.toTick)} |`,
  );
}
out.push("");
out.push(
  "| guest | algorithm | POST → compressed | worker time | RAM size | memory.raw stored (sparse) | compressed | ratio vs stored |",
);
out.push("|---|---|---|---|---|---|---|---|");
for (const row of compressionRows) {
  out.push(
    `| ${row.guest} | zstd ${row.level} | ${range(row.wallMs)} | ${range(row.workerMs)} | ${mb(row.logical)} | ${mb(row.stored)} | ${mb(row.compressed)} | ${(row.stored / row.compressed).toFixed(1)}× |`,
  );
}
if (forkDisk) {
  out.push(
    "",
    `Disk used by the compressed ${guestLabel(GUESTS[0]!)} snapshot's memory (image, checksums, any cache) with 5 forks running: ${mb(forkDisk.stored)} for a compressed size of ${mb(forkDisk.compressed)} (${(forkDisk.stored / forkDisk.compressed).toFixed(2)}×).`,
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
const ratioOf = (numerator: number[], denominator: number[]) => spread(numerator).median / spread(denominator).median;
const forkRatios = (pick: (row: ForkRow) => number[]) =>
  GUESTS.map((guest, index) => ({
    label: guestLabel(guest),
    value: ratioOf(pick(forkRows[2 * index + 1]!), pick(forkRows[2 * index]!)),
  }));
const firstForkRatios = forkRatios((row) => row.first.to201);
const warmForkRatios = forkRatios((row) => row.warm.to201);
const downtimeRatios = downtimeRows
  .filter((row) => !row.guest.includes("disk"))
  .map((row) => ({ label: row.guest, value: ratioOf(row.downtime, row.sparseCopy) }));
const line = (ratios: Array<{ label: string; value: number }>) =>
  ratios.map(({ label, value }) => `${value.toFixed(2)} (${label})`).join(" ");
const met = (ratios: Array<{ value: number }>) => ratios.every(({ value }) => value <= GOAL_RATIO);
out.push(
  "",
  `fork compressed/raw ratio (first fork): ${line(firstForkRatios)}`,
  `fork compressed/raw ratio (warm): ${line(warmForkRatios)}`,
  `capture downtime/cp ratio: ${line(downtimeRatios)}`,
  "(cp: the worker's own sparse copy, `copySparseIntoStaging`, timed in this process as the worker times its pause)",
  `goal (≤ ${GOAL_RATIO}×, fork on the first fork): fork ${met(firstForkRatios) ? "met" : "NOT met"}, capture ${met(downtimeRatios) ? "met" : "NOT met"}`,
);
const cores = cpus().length;
const goalLines: string[] = [];
if (goalPauses.dense.length > 0) {
  const value = ratioOf(goalPauses.dense, goalPauses.idle);
  goalLines.push(
    `dense capture pause ratio: ${value.toFixed(2)} (4 GiB, 70% of RAM used, dirtying 16 MiB/s: ${range(goalPauses.dense)}; 256 MiB idle: ${range(goalPauses.idle)}; data dir on ${DATA_FS === "host" ? "the host's file system" : DATA_FS}) goal ≤ ${DENSE_GOAL_RATIO}: ${value <= DENSE_GOAL_RATIO ? "met" : "NOT met"}`,
  );
}
if (fanout) {
  const ideal = (fanout.n * fanout.oneForkCpuMs) / cores;
  const value = fanout.wallMs / ideal;
  goalLines.push(
    `fanout ratio: ${value.toFixed(2)} (N = ${fanout.n}: all ticked in ${ms(fanout.wallMs)}; one fork alone ${ms(fanout.oneForkWallMs)} using ${ms(fanout.oneForkCpuMs)} of CPU; ${cores} cores) goal ≤ ${FANOUT_GOAL_RATIO}: ${value <= FANOUT_GOAL_RATIO ? "met" : "NOT met"}`,
    `fan-out of ${fanout.n}: → 201 ${range(fanout.to201)}, → first tick ${range(fanout.toTick)}; per fork RSS ${spread(fanout.rssMiB).median.toFixed(0)} MiB, PSS ${spread(fanout.pssMiB).median.toFixed(0)} MiB (median)`,
    `fan-out CPU: ${ms(fanout.cpuMs)} busy over the fan-out = ${(fanout.cpuMs / (fanout.n * fanout.oneForkCpuMs)).toFixed(2)} × N × one fork's; the machine ${((100 * fanout.cpuMs) / (fanout.wallMs * cores)).toFixed(0)} % busy over its wall time (snapshot taken ${FANOUT_PHASE_MS} ms after a tick)`,
  );
}
for (const row of allocationRows) {
  const value = row.copy / row.source;
  goalLines.push(
    `disk copy allocation ratio: ${value.toFixed(3)} (${row.guest}: copy ${kib(row.copy)} allocated, source ${kib(row.source)}) goal ≤ ${ALLOCATION_GOAL_RATIO}: ${value <= ALLOCATION_GOAL_RATIO ? "met" : "NOT met"}`,
  );
}
if (goalLines.length > 0) out.push("", ...goalLines);
process.stdout.write(`${out.join("\n")}\n`);
