// The memory maps of the processes on this machine (/proc/<pid>/maps): who maps a file (QEMU maps guest RAM).
import { readdir, readFile } from "node:fs/promises";

/** Each running process's id and /proc/<pid>/maps text; processes gone or unreadable are skipped. */
export async function* processMaps(): AsyncGenerator<{ pid: string; maps: string }> {
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((name) => /^\d+$/.test(name));
  for (const pid of pids) {
    const maps = await readFile(`/proc/${pid}/maps`, "utf8").catch(() => undefined);
    if (maps !== undefined) yield { pid, maps };
  }
}
