// "Resumed, not rebooted", checked one way everywhere. The guest's /init prints BOOT_LINE once per boot and keeps its
// tick count on its disk (scripts/build-image.ts), so a cold boot from a snapshot's disk prints `tick L+1` as a resume
// does: only a missing boot line after the capture point tells them apart, and the count must then go on from L+1.
import { readFile } from "node:fs/promises";
import { type ApiCall, CONSOLE_TAIL, consoleLines, ticksIn } from "./console.ts";
import { waitFor } from "./fixtures.ts";

/** What the guest's /init prints first on every boot. */
export const BOOT_LINE = "snapfleet: boot";

/** Reads a guest's whole console, oldest line first. */
export type ConsoleReader = () => Promise<string[]>;

export interface CapturePoint {
  /** Console lines before the resumed guest's output: 0 for a fork, whose console starts empty. */
  fromLine: number;
  /** The last tick the guest printed before it was captured. */
  lastTick: number;
  /**
   * For a guest captured while running (it ticks on until the capture pauses it): the last tick seen once the
   * capture had returned. The capture fell between `lastTick` and this one.
   */
  lastTickBy?: number;
}

/** A console through the API's logs endpoint; refuses one too long to hold its capture point. */
export function apiConsole(api: ApiCall, instance: string): ConsoleReader {
  return async () => {
    const lines = await consoleLines(api, instance);
    if (lines.length >= CONSOLE_TAIL) {
      throw new Error(`${instance}'s console holds ${CONSOLE_TAIL} lines or more: its capture point cannot be located`);
    }
    return lines;
  };
}

/** A console log file's complete lines (a line still being written is left for the next read); none before QEMU made it. */
export function fileConsole(file: string): ConsoleReader {
  return async () => {
    const text = await readFile(file, "utf8").catch((error: NodeJS.ErrnoException) => {
      if (error.code === "ENOENT") return "";
      throw error;
    });
    return text.split("\n").slice(0, -1);
  };
}

/** Where a console stands now: its line count and last tick (not the highest: a restore may have set it back). */
export async function consolePoint(read: ConsoleReader): Promise<CapturePoint> {
  const lines = await read();
  return { fromLine: lines.length, lastTick: ticksIn(lines).at(-1) ?? 0 };
}

/**
 * The capture point of a payload taken between two reads of its guest's console (`after` defaults to `before`: a
 * guest that was not running), for a guest resumed from it on a console of `fromLine` lines (0: a fork's new console).
 */
export function capturedBetween(before: CapturePoint, after = before, fromLine = 0): CapturePoint {
  return { fromLine, lastTick: before.lastTick, lastTickBy: after.lastTick };
}

const describePoint = ({ fromLine, lastTick, lastTickBy = lastTick }: CapturePoint) =>
  `console line ${fromLine}, last tick ${lastTickBy === lastTick ? lastTick : `${lastTick}..${lastTickBy}`}`;

const excerpt = (lines: string[]) => JSON.stringify(lines.slice(0, 12).map((line) => line.trim()));

/** Throws unless the console after the capture point shows a resume: no boot line, ticks from L+1 on, one by one. */
export function assertResumed(lines: string[], capture: CapturePoint): number[] {
  const { fromLine, lastTick, lastTickBy = lastTick } = capture;
  const point = describePoint(capture);
  if (lines.length < fromLine) {
    throw new Error(
      `the console holds ${lines.length} lines, fewer than the ${fromLine} before the capture (${point})`,
    );
  }
  const after = lines.slice(fromLine);
  const boot = after.findIndex(isBootLine);
  if (boot >= 0) {
    throw new Error(
      `rebooted, not resumed: "${BOOT_LINE}" at console line ${fromLine + boot}, after the capture (${point}); ` +
        `the console from there: ${excerpt(after)}`,
    );
  }
  const ticks = ticksIn(after);
  const first = ticks[0];
  if (first === undefined) throw new Error(`no tick after the capture (${point}): ${excerpt(after)}`);
  if (first < lastTick + 1 || first > lastTickBy + 1) {
    const expected = lastTickBy === lastTick ? `${lastTick + 1}` : `${lastTick + 1}..${lastTickBy + 1}`;
    throw new Error(`the count does not go on: first tick ${first} after the capture (${point}), expected ${expected}`);
  }
  if (ticks.some((tick, index) => tick !== first + index)) {
    throw new Error(`ticks after the capture (${point}) skip or repeat: ${JSON.stringify(ticks)}`);
  }
  return ticks;
}

/**
 * Throws unless the console after `from` shows a cold boot that counts on from the disk: a boot line, then ticks
 * from L or L+1 (the guest prints a tick before writing it to disk, so the disk holds the last tick or the one before).
 */
export function assertBootedFromDisk(lines: string[], from: CapturePoint): number[] {
  const after = lines.slice(from.fromLine);
  const boot = after.findLastIndex(isBootLine);
  if (boot < 0) throw new Error(`no "${BOOT_LINE}" after ${describePoint(from)}: ${excerpt(after)}`);
  const ticks = ticksIn(after.slice(boot));
  const first = ticks[0];
  if (first === undefined || first < from.lastTick || first > from.lastTick + 1) {
    throw new Error(`a boot from disk after tick ${from.lastTick} should count from it or the next: ${ticks}`);
  }
  if (ticks.some((tick, index) => tick !== first + index)) {
    throw new Error(`ticks after the boot skip or repeat: ${JSON.stringify(ticks)}`);
  }
  return ticks;
}

/** Waits for `ticks` ticks (or a boot line) after the capture point, then asserts a resume; returns the ticks after it. */
export function waitForResume(
  read: ConsoleReader,
  capture: CapturePoint,
  options: WaitOptions = {},
): Promise<number[]> {
  const { ticks = 2 } = options;
  // A boot line settles it at once: the judgement names it.
  const ready = (after: string[]) => after.some(isBootLine) || ticksIn(after).length >= ticks;
  return judgeWhenReady(read, capture, options, ready, assertResumed, "a resume");
}

/** Waits for `ticks` ticks after a boot following `from`, then asserts a cold boot that counted on from the disk. */
export function waitForBootFromDisk(read: ConsoleReader, from: CapturePoint, options: WaitOptions = {}) {
  const { ticks = 2 } = options;
  const ready = (after: string[]) => ticksIn(after.slice(Math.max(0, after.findLastIndex(isBootLine)))).length >= ticks;
  return judgeWhenReady(read, from, options, ready, assertBootedFromDisk, "a boot from disk");
}

const isBootLine = (line: string) => line.includes(BOOT_LINE);

interface WaitOptions {
  /** Ticks to see after the capture point before judging (default 2: a first tick and that the next follows it). */
  ticks?: number;
  timeoutMs?: number;
}

async function judgeWhenReady(
  read: ConsoleReader,
  point: CapturePoint,
  { timeoutMs = 60_000 }: WaitOptions,
  ready: (after: string[]) => boolean,
  judge: (lines: string[], point: CapturePoint) => number[],
  what: string,
): Promise<number[]> {
  let lastRead: string[] = [];
  const lines = await waitFor(
    async () => {
      lastRead = await read();
      return ready(lastRead.slice(point.fromLine)) ? lastRead : undefined;
    },
    { timeoutMs, intervalMs: 250, what },
  ).catch((error: Error) => {
    throw new Error(
      `${error.message} (${describePoint(point)}); the console after it: ${excerpt(lastRead.slice(point.fromLine))}`,
    );
  });
  return judge(lines, point);
}
