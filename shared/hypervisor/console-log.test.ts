import { spawn } from "node:child_process";
import { appendFileSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { tempDir } from "../../test/helpers/fixtures.ts";
import { previousConsoleLog, rotateConsoleLog, tailConsoleLog } from "./console-log.ts";

const data = tempDir("console");
afterAll(() => data.remove());

const lines = (from: number, to: number) => Array.from({ length: to - from }, (_, index) => `tick ${from + index}`);

describe("console log rotation", () => {
  it("rotates only past the limit, keeps one previous file, and the tail reads across both", async () => {
    const file = path.join(data.dir, "fixed.log");
    writeFileSync(file, `${lines(0, 50).join("\n")}\n`);
    expect(await rotateConsoleLog(file, 10_000)).toBe(false);
    expect(await rotateConsoleLog(file, 100)).toBe(true);
    expect(statSync(file).size).toBe(0);
    appendFileSync(file, `${lines(50, 53).join("\n")}\n`);
    expect(await tailConsoleLog(file, 5)).toEqual(lines(48, 53));
    expect(await tailConsoleLog(file, 2)).toEqual(lines(51, 53));
    writeFileSync(previousConsoleLog(file), "");
    expect(await tailConsoleLog(file, 5)).toEqual(lines(50, 53));
    expect(await tailConsoleLog(path.join(data.dir, "none.log"), 5)).toEqual([]);
  });

  it("copy-truncate under a live O_APPEND writer (as QEMU's append=on chardev) leaves no hole", async () => {
    const file = path.join(data.dir, "live.log");
    const writer = spawn("sh", [
      "-c",
      `exec >>'${file}'; i=0; while [ $i -lt 400 ]; do echo "tick $i"; i=$((i+1)); sleep 0.002; done`,
    ]);
    const exited = new Promise((resolve) => writer.once("exit", resolve));
    let rotations = 0;
    let running = true;
    void exited.then(() => {
      running = false;
    });
    while (running) {
      if (await rotateConsoleLog(file, 600)) rotations++;
      await new Promise((resolve) => setTimeout(resolve, 5)); // lets the writer append between two rotations
    }
    expect(rotations).toBeGreaterThan(1);
    // Without O_APPEND the writer would go on at its old offset and the truncated file would start with zeros.
    expect(readFileSync(file).includes(0)).toBe(false);
    const tail = await tailConsoleLog(file, 30);
    const numbers = tail.map((line) => Number(/^tick (\d+)$/.exec(line)![1]));
    expect(numbers.at(-1)).toBe(399);
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
  });
});
