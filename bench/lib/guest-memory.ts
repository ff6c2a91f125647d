// Captures the RAM of a freshly booted busybox guest as a file, the way snapshots capture it: QEMU backs guest
// RAM with a shared memory file; we pause the guest over QMP and copy that file sparsely.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createConnection } from "node:net";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";

const run = promisify(execFile);
const BOOT_TIMEOUT_MS = 60_000;
const TICKS_BEFORE_CAPTURE = 3;

/** The guest image scripts/build-image.ts writes, if it is there and QEMU is installed. */
export async function findGuestImage(imagesDirectory = "data/images/busybox"): Promise<string | undefined> {
  if (!existsSync(path.join(imagesDirectory, "vmlinuz")) || !existsSync(path.join(imagesDirectory, "initrd.img")))
    return;
  const qemu = await run("qemu-system-x86_64", ["--version"]).catch(() => undefined);
  return qemu ? imagesDirectory : undefined;
}

async function qmp(socketPath: string, commands: string[]): Promise<void> {
  const socket = createConnection(socketPath);
  const lines: string[] = [];
  socket.setEncoding("utf8");
  socket.on("data", (text: string) => lines.push(...text.split("\n").filter(Boolean)));
  await new Promise((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  for (const command of ["qmp_capabilities", ...commands]) {
    const seen = lines.length;
    socket.write(`${JSON.stringify({ execute: command })}\n`);
    while (!lines.slice(seen).some((line) => line.includes('"return"'))) await sleep(20);
  }
  socket.end();
}

/** Boots the guest with `memoryMiB` of RAM, waits for its init to tick, captures RAM into `destination`. */
export async function captureGuestMemory(
  imageDirectory: string,
  workDirectory: string,
  destination: string,
  memoryMiB = 256,
) {
  const memoryFile = path.join(workDirectory, "guest-ram");
  const serialLog = path.join(workDirectory, "guest-serial.log");
  const qmpSocket = path.join(workDirectory, "guest-qmp.sock");
  const manifest = JSON.parse(await readFile(path.join(imageDirectory, "manifest.json"), "utf8")) as {
    cmdline: string;
  };
  const qemu: ChildProcess = spawn(
    "qemu-system-x86_64",
    [
      ...["-accel", "tcg", "-m", `${memoryMiB}M`, "-smp", "1", "-display", "none", "-no-reboot"],
      ...["-object", `memory-backend-file,id=mem,size=${memoryMiB}M,mem-path=${memoryFile},share=on`],
      ...["-machine", "pc,memory-backend=mem", "-serial", `file:${serialLog}`],
      ...["-qmp", `unix:${qmpSocket},server=on,wait=off`],
      ...["-kernel", path.join(imageDirectory, "vmlinuz"), "-initrd", path.join(imageDirectory, "initrd.img")],
      ...["-append", manifest.cmdline],
    ],
    { stdio: "ignore" },
  );
  try {
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    while (!(await readFile(serialLog, "utf8").catch(() => "")).includes(`tick ${TICKS_BEFORE_CAPTURE}`)) {
      if (Date.now() > deadline || qemu.exitCode !== null) throw new Error("the guest did not boot in time");
      await sleep(250);
    }
    await qmp(qmpSocket, ["stop"]);
    await run("cp", ["--sparse=always", memoryFile, destination]);
    await qmp(qmpSocket, ["quit"]);
  } finally {
    qemu.kill();
  }
}
