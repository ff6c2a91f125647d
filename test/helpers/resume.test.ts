// The resume check on hand-written consoles: each way a console can fail to show a resume is named in the error.
// (The real cold boot it must reject is in shared/hypervisor/qemu/driver.test.ts.)
import { describe, expect, it } from "vitest";
import { assertBootedFromDisk, assertResumed } from "./resume.ts";

const BEFORE = ["snapfleet: boot", "snapfleet: disk tick 0", "tick 1", "tick 2", "tick 3"];

describe("assertResumed", () => {
  it("accepts ticks that go on from L+1 with no boot line after the capture point", () => {
    expect(assertResumed([...BEFORE, "tick 4", "tick 5"], { fromLine: 5, lastTick: 3 })).toEqual([4, 5]);
    expect(assertResumed(["tick 5", "tick 6"], { fromLine: 0, lastTick: 3, lastTickBy: 4 })).toEqual([5, 6]);
  });

  it("rejects a boot line after the capture point even when the count goes on", () => {
    const rebooted = [...BEFORE, "snapfleet: boot", "snapfleet: disk tick 3", "tick 4", "tick 5"];
    expect(() => assertResumed(rebooted, { fromLine: 5, lastTick: 3 })).toThrow(
      /rebooted, not resumed: "snapfleet: boot" at console line 5/,
    );
  });

  it("rejects a count that starts anywhere but L+1, or skips", () => {
    expect(() => assertResumed(["tick 3", "tick 4"], { fromLine: 0, lastTick: 3 })).toThrow(
      /first tick 3 .* expected 4/,
    );
    expect(() => assertResumed(["tick 6"], { fromLine: 0, lastTick: 3, lastTickBy: 4 })).toThrow(/expected 4\.\.5/);
    expect(() => assertResumed(["tick 4", "tick 6"], { fromLine: 0, lastTick: 3 })).toThrow(/skip or repeat: \[4,6\]/);
    expect(() => assertResumed(["snapfleet: disk tick 3"], { fromLine: 0, lastTick: 3 })).toThrow(/no tick after/);
  });

  it("rejects a console shorter than its capture point", () => {
    expect(() => assertResumed(["tick 4"], { fromLine: 5, lastTick: 3 })).toThrow(/holds 1 lines, fewer than the 5/);
  });
});

describe("assertBootedFromDisk", () => {
  it("accepts a boot that counts on from the disk's tick, and nothing without a boot line", () => {
    const booted = [...BEFORE, "snapfleet: boot", "tick 3", "tick 4"];
    expect(assertBootedFromDisk(booted, { fromLine: 5, lastTick: 3 })).toEqual([3, 4]);
    expect(() => assertBootedFromDisk([...BEFORE, "tick 4"], { fromLine: 5, lastTick: 3 })).toThrow(/no "snapfleet/);
    expect(() => assertBootedFromDisk([...BEFORE, "snapfleet: boot", "tick 1"], { fromLine: 5, lastTick: 3 })).toThrow(
      /count from it or the next: 1/,
    );
  });
});
