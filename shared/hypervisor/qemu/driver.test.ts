import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage } from "../../../scripts/build-image.ts";
import {
  type CapturePoint,
  consolePoint,
  fileConsole,
  waitForBootFromDisk,
  waitForResume,
} from "../../../test/helpers/resume.ts";
import { MigrationError, VmBootError } from "../errors.ts";
import type { GuestImage } from "../image.ts";
import { isProcessAlive, killProcess, waitForExit } from "../process.ts";
import { copyFileSparse } from "../sparse-copy.ts";
import type { HypervisorDriver, VmHandle, VmSpec } from "../types.ts";
import { createQemuDriver } from "./driver.ts";

const MIB = 1024 * 1024;
const GUEST_MEMORY = 128 * MIB;
const TICK_TIMEOUT_MS = 45_000;

let image: GuestImage;
let root: string;
let driver: HypervisorDriver;
const started = new Set<VmHandle>();

beforeAll(async () => {
  image = await buildImage({ imagesDir: "./data/images" });
  root = await mkdtemp(path.join(os.tmpdir(), "snapfleet-qemu-"));
  driver = createQemuDriver({ defaultAccel: "tcg" });
}, 300_000);

afterAll(async () => {
  for (const vm of started) await vm.stop({ gracefulTimeoutMs: 1_000 }).catch(() => killProcess(vm.pid, "SIGKILL"));
  if (root) await rm(root, { recursive: true, force: true });
});

function spec(name: string, overrides: Partial<VmSpec> = {}): VmSpec {
  return { instanceDir: path.join(root, name), image, memoryBytes: GUEST_MEMORY, vcpus: 1, ...overrides };
}

async function boot(vmSpec: VmSpec): Promise<VmHandle> {
  const vm = await driver.boot(vmSpec);
  started.add(vm);
  return vm;
}

async function stop(vm: VmHandle): Promise<void> {
  await vm.stop();
  started.delete(vm);
}

/** Complete `tick N` lines of a console log. */
async function ticks(log: string): Promise<number[]> {
  const text = await readFile(log, "utf8");
  return [...text.matchAll(/^tick (\d+)\r?\n/gm)].map((match) => Number(match[1]));
}

async function waitForTicks(log: string, count: number): Promise<number[]> {
  const deadline = Date.now() + TICK_TIMEOUT_MS;
  for (;;) {
    const seen = await ticks(log).catch(() => []);
    if (seen.length >= count) return seen;
    if (Date.now() > deadline) throw new Error(`fewer than ${count} ticks in ${log} after ${TICK_TIMEOUT_MS} ms`);
    await sleep(100); // polls the console file: QEMU appends to it with no notification
  }
}

/** Waits for a console line; returns its match. A dense guest fills its RAM before it prints anything more. */
async function waitForConsole(log: string, line: RegExp): Promise<RegExpMatchArray> {
  const deadline = Date.now() + 3 * TICK_TIMEOUT_MS;
  for (;;) {
    const match = (await readFile(log, "utf8").catch(() => "")).match(line);
    if (match) return match;
    if (Date.now() > deadline) throw new Error(`no line matching ${line} in ${log} after ${3 * TICK_TIMEOUT_MS} ms`);
    await sleep(100);
  }
}

const PAGE = 4096;
const ZERO_PAGE_DIGEST = createHash("sha1").update(Buffer.alloc(PAGE)).digest("hex");

/** One digest per 4 KiB page of a guest's memory file. */
async function pageDigests(file: string): Promise<string[]> {
  const bytes = await readFile(file);
  const digests: string[] = [];
  for (let offset = 0; offset < bytes.length; offset += PAGE) {
    digests.push(
      createHash("sha1")
        .update(bytes.subarray(offset, offset + PAGE))
        .digest("hex"),
    );
  }
  return digests;
}

async function sha256(file: string): Promise<string> {
  return createHash("sha256")
    .update(await readFile(file))
    .digest("hex");
}

async function sizeOf(file: string): Promise<number> {
  return (await stat(file)).size;
}

/** Bytes a file holds on disk (allocated blocks, as `du` counts them), not its apparent size. */
async function allocatedBytes(file: string): Promise<number> {
  return (await stat(file)).blocks * 512;
}

async function qemuProcessesUsing(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "");
    if (cmdline.includes(dir) && (await isProcessAlive(Number(entry)))) pids.push(Number(entry));
  }
  return pids;
}

const RUNTIME_FILES = ["qmp.sock", "qemu.pid", "qemu.json"];

describe("qemu driver on a real TCG guest", { timeout: 120_000 }, () => {
  let source: VmHandle;
  let lastTickBeforeCapture = 0;
  /** The stored payload's capture point, for a VM booted on a new console from it. */
  const captured = (): CapturePoint => ({ fromLine: 0, lastTick: lastTickBeforeCapture });
  const deviceState = () => path.join(root, "snapshot", "device-state.bin");
  const storedMemory = () => path.join(root, "snapshot", "memory.raw");
  const storedDisk = () => path.join(root, "snapshot", "disk.raw");

  it("boots the image and prints ticks on the serial console", async () => {
    source = await boot(spec("source"));
    expect(await isProcessAlive(source.pid)).toBe(true);
    expect(await waitForTicks(source.consoleLog, 2)).toEqual([1, 2]);
    expect(await source.status()).toEqual({ state: "running", qemuState: "running" });
  });

  it("pauses and resumes the guest", async () => {
    // A second guest is the clock: two of its ticks are guest time in which a running guest ticks, on a loaded host too.
    const metronome = await boot(spec("metronome"));
    await waitForTicks(metronome.consoleLog, 1);
    await source.pause();
    expect(await source.status()).toEqual({ state: "paused", qemuState: "paused" }); // QMP query-status
    const whilePaused = (await ticks(source.consoleLog)).length;
    await waitForTicks(metronome.consoleLog, (await ticks(metronome.consoleLog)).length + 2);
    expect((await ticks(source.consoleLog)).length).toBe(whilePaused);
    expect(await source.status()).toEqual({ state: "paused", qemuState: "paused" });
    await stop(metronome);
    await source.resume();
    expect((await source.status()).state).toBe("running");
    await waitForTicks(source.consoleLog, whilePaused + 1);
  });

  it("captures a running guest in one pause, its disk copied as it was then though the guest writes on", async () => {
    const dir = path.join(root, "running-capture");
    let diskAtPause = "";
    let allocatedAtPause = 0;
    const capture = await source.captureRunning({
      deviceStateFile: path.join(dir, "device-state.bin"),
      diskFile: path.join(dir, "disk.raw"),
      // Stopped and drained: the file holds what the guest had written.
      whilePaused: async () => {
        diskAtPause = await sha256(source.diskFile);
        allocatedAtPause = await allocatedBytes(source.diskFile);
      },
    });
    expect((await source.status()).state).toBe("running");
    expect(capture.downtimeMs).toBeGreaterThan(0);
    expect(Object.keys(capture.steps)).toEqual(
      expect.arrayContaining(["prepareMs", "pauseMs", "stateAndMemoryMs", "diskCopyStartMs", "resumeMs"]),
    );
    // The guest writes its tick to the disk every second: two more ticks are two writes over the copied blocks.
    const seen = (await ticks(source.consoleLog)).length;
    await waitForTicks(source.consoleLog, seen + 2);
    await capture.diskCopy.wait();
    expect(await sha256(path.join(dir, "disk.raw"))).toBe(diskAtPause);
    expect(await sha256(source.diskFile)).not.toBe(diskAtPause);
    // As sparse as the source: QEMU's copy of the source's holes (zeroed extents) must not stay allocated. One
    // file-system block of slack: ext4 may keep an extent-tree block for a file that was fragmented while written.
    expect(await sizeOf(path.join(dir, "disk.raw"))).toBeGreaterThan(100 * allocatedAtPause);
    expect(await allocatedBytes(path.join(dir, "disk.raw"))).toBeLessThanOrEqual(allocatedAtPause * 1.01 + 4096);
  });

  it("captures device state leaving shared RAM out of the stream, then stops cleanly", async () => {
    const result = await source.captureDeviceState(deviceState());
    expect(result.bytes).toBe(await sizeOf(deviceState()));
    expect(result.bytes).toBeLessThan(4 * MIB); // RAM stayed in the memory file
    expect((await source.status()).state).toBe("paused");
    lastTickBeforeCapture = (await ticks(source.consoleLog)).at(-1)!;

    await copyFileSparse(source.memoryFile, storedMemory());
    await copyFileSparse(source.diskFile, storedDisk());
    await stop(source);
    expect(await source.status()).toEqual({ state: "gone" });
    const left = await readdir(source.instanceDir);
    for (const file of RUNTIME_FILES) expect(left).not.toContain(file);
    await source.stop(); // stopping twice is harmless
  });

  it("boots from the payload with a copy of the memory file and continues counting without a reboot", async () => {
    const memoryCopy = path.join(root, "restore", "memory.raw");
    const diskCopy = path.join(root, "restore", "disk.raw");
    await mkdir(path.dirname(memoryCopy), { recursive: true });
    await copyFileSparse(storedMemory(), memoryCopy);
    await copyFileSparse(storedDisk(), diskCopy);
    const restored = await boot(
      spec("restore", { memoryFile: memoryCopy, diskFile: diskCopy, incoming: { deviceStateFile: deviceState() } }),
    );
    expect((await restored.status()).state).toBe("running");
    await waitForResume(fileConsole(restored.consoleLog), captured());
    await stop(restored);
  });

  it("tells a cold boot from the snapshot's disk apart from a resume, though it counts on from the same tick", async () => {
    const diskCopy = path.join(root, "cold", "disk.raw");
    await mkdir(path.dirname(diskCopy), { recursive: true });
    await copyFileSparse(storedDisk(), diskCopy);
    const cold = await boot(spec("cold", { diskFile: diskCopy }));
    const console = fileConsole(cold.consoleLog);
    // The disk holds the count, so the ticks alone look like a resume: only the boot line gives the reboot away.
    await waitForBootFromDisk(console, captured());
    await expect(waitForResume(console, captured())).rejects.toThrow(/rebooted, not resumed: "snapfleet: boot"/);
    await stop(cold);
  });

  it("can restore paused, and a share=off fork leaves the stored memory file untouched", async () => {
    const before = { mtimeMs: (await stat(storedMemory())).mtimeMs, hash: await sha256(storedMemory()) };
    const forkDisk = path.join(root, "fork-disk.raw");
    await copyFileSparse(storedDisk(), forkDisk);
    const fork = await boot(
      spec("fork", {
        memoryFile: storedMemory(),
        shareMemory: false,
        diskFile: forkDisk,
        incoming: { deviceStateFile: deviceState(), paused: true },
      }),
    );
    expect((await fork.status()).state).toBe("paused");
    await fork.resume();
    await waitForResume(fileConsole(fork.consoleLog), captured(), { ticks: 3 });

    // x-ignore-shared only skips share=on RAM: capturing this fork puts its RAM in the stream.
    const capture = await fork.captureDeviceState(path.join(root, "fork-state.bin"));
    expect(capture.bytes).toBeGreaterThan(8 * MIB);
    await stop(fork);

    expect((await stat(storedMemory())).mtimeMs).toBe(before.mtimeMs);
    expect(await sha256(storedMemory())).toBe(before.hash);
  });

  it("refuses to restore without the captured memory file and leaves nothing behind", async () => {
    const error = await boot(
      spec("no-memory", {
        memoryFile: path.join(root, "missing-memory.raw"),
        incoming: { deviceStateFile: deviceState() },
      }),
    ).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VmBootError);
    expect(await readdir(path.join(root, "no-memory"))).toEqual([]);
  });

  it("fails a restore from a corrupt device state file and cleans up", async () => {
    const corrupt = path.join(root, "corrupt-state.bin");
    await writeFile(corrupt, "not a migration stream");
    const memoryCopy = path.join(root, "corrupt", "memory.raw");
    await mkdir(path.dirname(memoryCopy), { recursive: true });
    await copyFileSparse(storedMemory(), memoryCopy);
    const error = await boot(spec("corrupt", { memoryFile: memoryCopy, incoming: { deviceStateFile: corrupt } })).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(MigrationError);
    const left = await readdir(path.join(root, "corrupt"));
    expect(left.sort()).toEqual(["memory.raw"]); // the caller's file stays; everything the boot created is gone
    expect(await qemuProcessesUsing(path.join(root, "corrupt"))).toEqual([]);
  });

  let rebooted: VmHandle;

  it("boots again from the same disk and resumes counting from the tick stored on it", async () => {
    const beforeReboot = await consolePoint(fileConsole(source.consoleLog));
    rebooted = await boot(spec("source"));
    await waitForBootFromDisk(fileConsole(rebooted.consoleLog), beforeReboot, { ticks: 1 });
  });

  it("attaches to the running VM after the handle is dropped (worker restart)", async () => {
    const attached = await driver.attach(rebooted.instanceDir);
    expect(attached?.pid).toBe(rebooted.pid);
    expect(attached?.memoryFile).toBe(rebooted.memoryFile);
    await attached!.pause();
    expect((await rebooted.status()).state).toBe("paused");
    await attached!.resume();
    expect((await attached!.status()).state).toBe("running");
  });

  it("detects a killed QEMU in status() and attach(), and cleans its socket and pidfile", async () => {
    killProcess(rebooted.pid, "SIGKILL");
    expect(await waitForExit(rebooted.pid, 10_000)).toBe(true);
    expect(await rebooted.status()).toEqual({ state: "gone" });
    await expect(rebooted.pause()).rejects.toThrow(/gone/);
    expect(await driver.attach(rebooted.instanceDir)).toBeNull();
    const left = await readdir(rebooted.instanceDir);
    for (const file of RUNTIME_FILES) expect(left).not.toContain(file);
    await stop(rebooted);
  });

  it("fails a boot with a bad kernel path and leaves no process, socket or file", async () => {
    const badImage: GuestImage = { ...image, kernelPath: path.join(root, "no-such-vmlinuz") };
    const error = await boot(spec("bad-kernel", { image: badImage })).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(VmBootError);
    expect((error as Error).message).toMatch(/no-such-vmlinuz/);
    expect(await readdir(path.join(root, "bad-kernel"))).toEqual([]);
    expect(await qemuProcessesUsing(path.join(root, "bad-kernel"))).toEqual([]);
  });

  // Filling 144 MiB under TCG takes 10–30 s before the first tick, more on a busy machine.
  it("fills a dense guest's RAM on demand and keeps rewriting it while it runs", { timeout: 300_000 }, async () => {
    const memoryBytes = 256 * MIB;
    const load = { fillPercent: 70, dirtyMiBPerSecond: 4 };
    const dense = await boot(spec("dense", { memoryBytes, memoryLoad: load }));
    const [, loadMiB] = await waitForConsole(dense.consoleLog, /^snapfleet: memory load (\d+) MiB of (\d+)/m);
    await waitForConsole(dense.consoleLog, /^snapfleet: memory load dirtying 4 MiB\/s/m);
    // 70 % of what the kernel reports (MemTotal, about 80 % of the RAM given), less headroom for the kernel.
    expect(Number(loadMiB) * MIB).toBeGreaterThan(memoryBytes * 0.4);
    await waitForTicks(dense.consoleLog, 1);
    const first = await pageDigests(dense.memoryFile);
    const before = (await ticks(dense.consoleLog)).length;
    await waitForTicks(dense.consoleLog, before + 3);
    const second = await pageDigests(dense.memoryFile);
    // Nine tenths of the load is data (a tenth is zero pages); an idle guest holds about a fifth of its RAM.
    const dataBytes = second.filter((digest) => digest !== ZERO_PAGE_DIGEST).length * PAGE;
    expect(dataBytes).toBeGreaterThan(Number(loadMiB) * MIB * 0.9);
    // Three ticks at 4 MiB/s rewrite at least 8 MiB of pages; an idle guest changes a few hundred KiB.
    const changed = second.filter((digest, index) => digest !== first[index]).length * PAGE;
    expect(changed).toBeGreaterThan(8 * MIB);
    await stop(dense);
  });

  it("rejects a memory size QEMU cannot map before starting anything", async () => {
    await expect(boot(spec("odd-memory", { memoryBytes: GUEST_MEMORY + 1 }))).rejects.toBeInstanceOf(VmBootError);
  });

  it("leaves no QEMU process behind", async () => {
    expect(await qemuProcessesUsing(root)).toEqual([]);
  });
});
