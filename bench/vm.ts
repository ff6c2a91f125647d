// npm run bench:vm — boot, standby, restore and fork-layout timings of real busybox guests under QEMU TCG.
//
// Options: --rounds <n> (default 3), --sizes <MiB,MiB> (default 128,256), --accel tcg|kvm|auto (default tcg:
// nested KVM hangs on our build machines). Prints markdown tables for bench/README.md (## VM).
import { mkdir, mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { buildImage } from "../scripts/build-image.ts";
import { createQemuDriver } from "../shared/hypervisor/qemu/driver.ts";
import { copyFileSparse } from "../shared/hypervisor/sparse-copy.ts";
import type { Accel, VmHandle, VmSpec } from "../shared/hypervisor/types.ts";
import { median, spread } from "./lib/median.ts";

const MiB = 1 << 20;
const TICK_TIMEOUT_MS = 60_000;

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "3" },
    sizes: { type: "string", default: "128,256" },
    accel: { type: "string", default: "tcg" },
  },
});
const ROUNDS = Number(flags.rounds);
const SIZES_MIB = flags.sizes.split(",").map(Number);
const driver = createQemuDriver({ defaultAccel: flags.accel as Accel });
const image = await buildImage();
const root = await mkdtemp(path.join(tmpdir(), "snapfleet-bench-vm-"));
const running = new Set<VmHandle>();

async function boot(spec: VmSpec): Promise<VmHandle> {
  const vm = await driver.boot(spec);
  running.add(vm);
  return vm;
}

async function stop(vm: VmHandle): Promise<void> {
  await vm.stop();
  running.delete(vm);
}

function spec(dir: string, memoryMiB: number, overrides: Partial<VmSpec> = {}): VmSpec {
  return { instanceDir: path.join(root, dir), image, memoryBytes: memoryMiB * MiB, vcpus: 1, ...overrides };
}

async function tickCount(log: string): Promise<number> {
  const text = await readFile(log, "utf8").catch(() => "");
  return [...text.matchAll(/^tick \d+\r?\n/gm)].length;
}

/** Resolves once the console log holds more than `after` complete tick lines. */
async function waitForTick(log: string, after: number): Promise<void> {
  const deadline = Date.now() + TICK_TIMEOUT_MS;
  while ((await tickCount(log)) <= after) {
    if (Date.now() > deadline) throw new Error(`no tick in ${log} within ${TICK_TIMEOUT_MS} ms`);
    await sleep(5);
  }
}

async function timed<T>(operation: () => Promise<T>): Promise<[T, number]> {
  const started = performance.now();
  const result = await operation();
  return [result, performance.now() - started];
}

async function allocated(file: string): Promise<number> {
  return (await stat(file)).blocks * 512;
}

interface Round {
  bootToFirstTickMs: number;
  pauseMs: number;
  captureMs: number;
  memoryCopyMs: number;
  standbyMs: number;
  downtimeMs: number;
  stateBytes: number;
  memoryAllocatedBytes: number;
  restoreCopyMs: number;
  restoreToRunningMs: number;
  restoreToNextTickMs: number;
}

/** One full cycle: boot → standby (pause, capture, sparse copy) → resume → stop → restore from a copy. */
async function measureRound(memoryMiB: number, round: number): Promise<Round> {
  const name = `${memoryMiB}m-${round}`;
  const snapshotDir = path.join(root, `${name}-snapshot`);
  await mkdir(snapshotDir, { recursive: true });

  const bootStarted = performance.now();
  const vm = await boot(spec(`${name}-source`, memoryMiB));
  await waitForTick(vm.consoleLog, 0);
  const bootToFirstTickMs = performance.now() - bootStarted;
  await waitForTick(vm.consoleLog, 2); // let the guest settle into its loop

  const standbyStarted = performance.now();
  const [, pauseMs] = await timed(() => vm.pause());
  const [capture, captureMs] = await timed(() => vm.captureDeviceState(path.join(snapshotDir, "device-state.bin")));
  const [, memoryCopyMs] = await timed(() => copyFileSparse(vm.memoryFile, path.join(snapshotDir, "memory.raw")));
  const standbyMs = performance.now() - standbyStarted;
  await vm.resume();
  const downtimeMs = performance.now() - standbyStarted;
  await copyFileSparse(vm.diskFile, path.join(snapshotDir, "disk.raw"));
  await stop(vm);

  const restoreDir = path.join(root, `${name}-restore`);
  await mkdir(restoreDir, { recursive: true });
  const restoreStarted = performance.now();
  const [, restoreCopyMs] = await timed(() =>
    copyFileSparse(path.join(snapshotDir, "memory.raw"), path.join(restoreDir, "memory.raw")),
  );
  await copyFileSparse(path.join(snapshotDir, "disk.raw"), path.join(restoreDir, "disk.raw"));
  const restored = await boot(
    spec(`${name}-restore`, memoryMiB, { incoming: { deviceStateFile: capture.deviceStateFile } }),
  );
  const restoreToRunningMs = performance.now() - restoreStarted;
  await waitForTick(restored.consoleLog, 0);
  const restoreToNextTickMs = performance.now() - restoreStarted;
  await stop(restored);
  const memoryAllocatedBytes = await allocated(path.join(snapshotDir, "memory.raw"));
  await rm(path.join(root, `${name}-source`), { recursive: true, force: true });
  await rm(restoreDir, { recursive: true, force: true });
  await rm(snapshotDir, { recursive: true, force: true });
  return {
    bootToFirstTickMs,
    pauseMs,
    captureMs,
    memoryCopyMs,
    standbyMs,
    downtimeMs,
    stateBytes: capture.bytes,
    memoryAllocatedBytes,
    restoreCopyMs,
    restoreToRunningMs,
    restoreToNextTickMs,
  };
}

interface ForkLayout {
  layout: string;
  forkStartMs: number;
  captureMs: number;
  streamBytes: number;
  memoryCopyMs: number;
  memoryCopyBytes: number;
  captureTotalMs: number;
  storedBytes: number;
}

/**
 * The two fork-by-sharing layouts: (a) forks map the parent's stored memory file privately (share=off), so a
 * capture of the fork carries its RAM in the migration stream; (b) the fork gets its own sparse copy (share=on),
 * so its capture is a small stream plus a sparse copy of its memory file.
 */
async function measureForkLayouts(memoryMiB: number): Promise<ForkLayout[]> {
  const parentDir = path.join(root, `fork-${memoryMiB}-parent`);
  const snapshotDir = path.join(root, `fork-${memoryMiB}-snapshot`);
  await mkdir(snapshotDir, { recursive: true });
  const parent = await boot(spec(`fork-${memoryMiB}-parent`, memoryMiB));
  await waitForTick(parent.consoleLog, 2);
  const parentState = (await parent.captureDeviceState(path.join(snapshotDir, "device-state.bin"))).deviceStateFile;
  await copyFileSparse(parent.memoryFile, path.join(snapshotDir, "memory.raw"));
  await copyFileSparse(parent.diskFile, path.join(snapshotDir, "disk.raw"));
  await stop(parent);
  await rm(parentDir, { recursive: true, force: true });

  const results: ForkLayout[] = [];
  for (const shared of [false, true]) {
    const layout = shared ? "(b) own memory file, share=on" : "(a) shared stored file, share=off";
    const forkDir = path.join(root, `fork-${memoryMiB}-${shared ? "own" : "shared"}`);
    await mkdir(forkDir, { recursive: true });
    await copyFileSparse(path.join(snapshotDir, "disk.raw"), path.join(forkDir, "disk.raw"));
    const forkStarted = performance.now();
    const memoryFile = shared ? path.join(forkDir, "memory.raw") : path.join(snapshotDir, "memory.raw");
    if (shared) await copyFileSparse(path.join(snapshotDir, "memory.raw"), memoryFile);
    const fork = await boot(
      spec(path.basename(forkDir), memoryMiB, {
        memoryFile,
        shareMemory: shared,
        incoming: { deviceStateFile: parentState },
      }),
    );
    const forkStartMs = performance.now() - forkStarted;
    await waitForTick(fork.consoleLog, 2);

    const captureStarted = performance.now();
    const [capture, captureMs] = await timed(() => fork.captureDeviceState(path.join(forkDir, "fork-state.bin")));
    let memoryCopyMs = 0;
    let memoryCopyBytes = 0;
    if (shared) {
      const copy = path.join(forkDir, "fork-memory.raw");
      [, memoryCopyMs] = await timed(() => copyFileSparse(memoryFile, copy));
      memoryCopyBytes = await allocated(copy);
    }
    const captureTotalMs = performance.now() - captureStarted;
    await stop(fork);
    results.push({
      layout,
      forkStartMs,
      captureMs,
      streamBytes: capture.bytes,
      memoryCopyMs,
      memoryCopyBytes,
      captureTotalMs,
      storedBytes: capture.bytes + memoryCopyBytes,
    });
    await rm(forkDir, { recursive: true, force: true });
  }
  await rm(snapshotDir, { recursive: true, force: true });
  return results;
}

const ms = (value: number) => `${Math.round(value)} ms`;
const mb = (bytes: number) => `${(bytes / 1e6).toFixed(1)} MB`;

function summarize(memoryMiB: number, rounds: Round[]): string {
  const cell = (pick: (round: Round) => number, format: (value: number) => string) => {
    const { median, min, max } = spread(rounds.map(pick));
    return `${format(median)} (${format(min)}–${format(max)})`;
  };
  return [
    `| ${memoryMiB} MiB`,
    cell((r) => r.bootToFirstTickMs, ms),
    cell((r) => r.standbyMs, ms),
    `${ms(median(rounds.map((r) => r.pauseMs)))} / ${ms(median(rounds.map((r) => r.captureMs)))} / ${ms(median(rounds.map((r) => r.memoryCopyMs)))}`,
    cell((r) => r.downtimeMs, ms),
    `${mb(median(rounds.map((r) => r.stateBytes)))} / ${mb(median(rounds.map((r) => r.memoryAllocatedBytes)))}`,
    cell((r) => r.restoreToRunningMs, ms),
    `${cell((r) => r.restoreToNextTickMs, ms)} |`,
  ].join(" | ");
}

try {
  const lines: string[] = [
    `QEMU ${flags.accel.toUpperCase()}, 1 vCPU, busybox image, ${ROUNDS} rounds per size; median (min–max), breakdowns are medians.`,
    "",
    "| guest | boot → first tick | standby | pause / capture / memory copy | downtime | state / memory file | restore → running | restore → next tick |",
    "|---|---|---|---|---|---|---|---|",
  ];
  for (const memoryMiB of SIZES_MIB) {
    const rounds: Round[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      rounds.push(await measureRound(memoryMiB, round));
      console.error(`${memoryMiB} MiB round ${round + 1}/${ROUNDS}:`, JSON.stringify(rounds.at(-1)));
    }
    lines.push(summarize(memoryMiB, rounds));
  }
  lines.push(
    "",
    "| guest | fork layout | fork start | capture stream | stream size | memory copy | capture total | stored |",
    "|---|---|---|---|---|---|---|---|",
  );
  for (const memoryMiB of SIZES_MIB) {
    for (const fork of await measureForkLayouts(memoryMiB)) {
      console.error(`${memoryMiB} MiB fork:`, JSON.stringify(fork));
      lines.push(
        `| ${memoryMiB} MiB | ${fork.layout} | ${ms(fork.forkStartMs)} | ${ms(fork.captureMs)} | ${mb(fork.streamBytes)} | ${fork.memoryCopyBytes ? `${ms(fork.memoryCopyMs)} (${mb(fork.memoryCopyBytes)})` : "—"} | ${ms(fork.captureTotalMs)} | ${mb(fork.storedBytes)} |`,
      );
    }
  }
  console.log(lines.join("\n"));
} finally {
  for (const vm of running) await vm.stop({ gracefulTimeoutMs: 1_000 }).catch(() => undefined);
  await rm(root, { recursive: true, force: true });
}
