/** Liveness checks for processes we did not spawn ourselves (daemonized QEMU is reparented away from us). */
import { readFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

/** True while the process exists and is not a zombie (a zombie has exited; only its parent can reap it). */
export async function isProcessAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // The state letter follows the parenthesised command name, which may itself contain spaces or ')'.
    const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
    return state !== "Z" && state !== "X";
  } catch {
    return false;
  }
}

/** The process's argv, or null if it is gone. */
export async function processArgs(pid: number): Promise<string[] | null> {
  try {
    const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8");
    return cmdline.split("\0").filter(Boolean);
  } catch {
    return null;
  }
}

/** Polls until the process has exited; returns false if it is still alive after `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (await isProcessAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
  return true;
}

export function killProcess(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ESRCH") throw error;
  }
}

/** What a process uses, from /proc: its CPU time (user + system) and its resident and virtual memory. */
export interface ProcessUsage {
  cpuSeconds: number;
  rssBytes: number;
  vmsBytes: number;
}

/** Clock ticks per second of /proc/<pid>/stat times: USER_HZ, 100 on every Linux ABI Node runs on. */
const USER_HZ = 100;

/** The process's usage, or null if it is gone. */
export async function processUsage(pid: number): Promise<ProcessUsage | null> {
  let stat: string;
  let status: string;
  try {
    [stat, status] = await Promise.all([
      readFile(`/proc/${pid}/stat`, "utf8"),
      readFile(`/proc/${pid}/status`, "utf8"),
    ]);
  } catch {
    return null;
  }
  // Fields after the parenthesised command name (which may hold spaces): state is field 3, utime 14, stime 15.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ticks = Number(fields[14 - 3]) + Number(fields[15 - 3]);
  const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB$`, "m").exec(status)?.[1] ?? 0) * 1024;
  return { cpuSeconds: ticks / USER_HZ, rssBytes: kib("VmRSS"), vmsBytes: kib("VmSize") };
}
