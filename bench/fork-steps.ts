// npx tsx bench/fork-steps.ts — where a compressed snapshot's fork spends its extra time, step by step: the image's
// checksum verification, its loop mount and unmount, and QEMU started (device state loaded, `cont`) on the memory
// file inside a fresh mount, again on the same mount (its decompressed pages cached by the first), and on the plain
// memory file of an uncompressed snapshot of the same guest.
//
// Options: --rounds <n> (default 10), --size <MiB> (default 256), --level <zstd level> (default 1).
// The service makes the two snapshots; the steps then run here, alone, each timed on its own.
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { loadImage } from "../shared/hypervisor/image.ts";
import { getHypervisor } from "../shared/hypervisor/registry.ts";
import { verifyImage } from "../shared/squashfs/checksums.ts";
import { startService } from "../test/helpers/service.ts";
import { median } from "./lib/median.ts";

const { values: flags } = parseArgs({
  options: {
    rounds: { type: "string", default: "10" },
    size: { type: "string", default: "256" },
    level: { type: "string", default: "1" },
  },
});
const ROUNDS = Number(flags.rounds);
const MIB = Number(flags.size);

// biome-ignore lint/suspicious/noExplicitAny: bench code reads the API's JSON loosely
type Json = any;

const service = await startService({ LOG_LEVEL: "warn" });
const call = async (pathAndQuery: string, json?: unknown): Promise<Json> => {
  const response = await service.api(pathAndQuery, { json });
  if (response.status >= 300) throw new Error(`${pathAndQuery}: ${response.status} ${await response.text()}`);
  return response.json();
};
const ticks = (id: string) => {
  try {
    return [...readFileSync(path.join(service.dataDir, "instances", id, "console.log"), "utf8").matchAll(/^tick /gm)]
      .length;
  } catch {
    return 0;
  }
};

const scratch = mkdtempSync(path.join(tmpdir(), "fork-steps-"));
const mountPoint = path.join(scratch, "mount");
mkdirSync(mountPoint);
const timings: Record<string, number[]> = {};
const time = async <T>(name: string, step: () => Promise<T> | T): Promise<T> => {
  const started = performance.now();
  const result = await step();
  timings[name] = [...(timings[name] ?? []), performance.now() - started];
  return result;
};

/** umount, timed once it succeeds: an exited QEMU's files are closed by the kernel a moment later. */
async function unmountWhenFree(): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await time("umount", () => execFileSync("umount", [mountPoint], { stdio: "pipe" }));
      return;
    } catch (error) {
      if (attempt >= 50) throw error;
      await sleep(20);
    }
  }
}

try {
  const source = await call("/instances", { name: "steps-src", size: `${MIB}MB`, vcpus: 1 });
  while (ticks(source.id) < 2) await sleep(50);
  const plain = await call(`/instances/${source.name}/snapshots`, { kind: "Standby" });
  const packed = await call(`/instances/${source.name}/snapshots`, {
    kind: "Standby",
    compression: { enabled: true, algorithm: "zstd", level: Number(flags.level) },
  });
  while ((await call(`/snapshots/${packed.id}`)).compression_state !== "compressed") await sleep(50);
  await service.api(`/instances/${source.name}`, { method: "DELETE" });
  const plainDir = path.join(service.dataDir, "snapshots", plain.id);
  const packedDir = path.join(service.dataDir, "snapshots", packed.id);
  const image = path.join(packedDir, "memory.raw.sqfs");

  const qemu = await getHypervisor("qemu", { qemu: { defaultAccel: "tcg" } });
  const guestImage = await loadImage("busybox", path.resolve("data/images"));
  const startQemu = async (name: string, memoryFile: string, deviceState: string, readOnly: boolean) => {
    const instanceDir = path.join(scratch, name);
    rmSync(instanceDir, { recursive: true, force: true });
    mkdirSync(instanceDir);
    copyFileSync(path.join(plainDir, "disk.raw"), path.join(instanceDir, "disk.raw"));
    const handle = await time(`QEMU start + load + cont (${name})`, () =>
      qemu.boot({
        instanceDir,
        image: guestImage,
        memoryBytes: MIB * 2 ** 20,
        vcpus: 1,
        memoryFile,
        shareMemory: false,
        memoryReadOnly: readOnly,
        diskFile: path.join(instanceDir, "disk.raw"),
        incoming: { deviceStateFile: deviceState },
      }),
    );
    await handle.stop();
  };

  for (let round = 0; round < ROUNDS; round++) {
    await time("verify (page cache warm)", () => verifyImage(image));
    await time("mount", () =>
      execFileSync("mount", ["-t", "squashfs", "-o", "loop,ro,nodev,nosuid", image, mountPoint]),
    );
    await startQemu("fresh mount", path.join(mountPoint, "memory.raw"), path.join(packedDir, "device-state"), true);
    await startQemu("kept mount", path.join(mountPoint, "memory.raw"), path.join(packedDir, "device-state"), true);
    await unmountWhenFree();
    await startQemu("plain", path.join(plainDir, "memory.raw"), path.join(plainDir, "device-state"), false);
  }
} finally {
  try {
    execFileSync("umount", ["--lazy", mountPoint], { stdio: "ignore" });
  } catch {} // not mounted
  await service.stop("SIGTERM").catch(() => {});
  service.remove();
  rmSync(scratch, { recursive: true, force: true });
}

process.stdout.write(`Command: npx tsx bench/fork-steps.ts --rounds ${ROUNDS} --size ${MIB}\n`);
for (const [name, values] of Object.entries(timings)) {
  process.stdout.write(
    `${name}: median ${median(values).toFixed(1)} ms (${Math.min(...values).toFixed(1)}–${Math.max(...values).toFixed(1)})\n`,
  );
}
process.stdout.write(
  `load average at the end: ${loadavg()
    .map((value) => value.toFixed(2))
    .join(" ")}\n`,
);
