// Test-only crash points: named places between a durable write and its announcement where a test can make the
// process die (SIGKILL, as a power cut would) to check that everything converges afterwards.
import { readFileSync, writeFileSync } from "node:fs";

let armedFile: string | undefined;

/** Enables crash points for this process (CRASH_POINTS_FILE); without it every point is a no-op. */
export function enableCrashPoints(file: string | undefined): void {
  armedFile = file;
}

/** The crash points, so a test can name each one. */
export const CRASH_POINTS = [
  "instance-create.after-boot",
  "instance-create.after-record",
  "instance-stop.after-vm-stopped",
  "instance-stop.after-record",
  "instance-delete.after-tombstone",
  "snapshot-capture.after-payload",
  "snapshot-capture.after-record",
  "snapshot-fork.after-boot",
  "snapshot-fork.after-record",
  "snapshot-delete.after-tombstone",
  "compression.after-started-record",
  "compression.after-compressed-record",
] as const;

export type CrashPoint = (typeof CRASH_POINTS)[number];

/** Dies here if the point is armed (disarming it first, so the restarted process goes on). */
export function crashPoint(point: CrashPoint): void {
  if (!armedFile) return;
  let armed: string[];
  try {
    armed = readFileSync(armedFile, "utf8").split("\n").filter(Boolean);
  } catch {
    return;
  }
  if (!armed.includes(point)) return;
  writeFileSync(armedFile, armed.filter((name) => name !== point).join("\n"));
  process.stderr.write(`crash point ${point}: killing process ${process.pid}\n`);
  process.kill(process.pid, "SIGKILL");
}
