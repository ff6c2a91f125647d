import { describe, expect, it } from "vitest";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import { expiredSnapshots, scheduledName } from "./run.ts";
import { dueAt, scheduleOffset } from "./scheduler.ts";

const source = sampleInstance();
const at = (minutesAgo: number, now: number) =>
  sampleSnapshot(source, { created_at: new Date(now - minutesAgo * 60_000).toISOString() });

describe("schedule runs", () => {
  it("keeps the newest max_count, deleting the oldest first", () => {
    const now = Date.now();
    const [a, b, c] = [at(3, now), at(2, now), at(1, now)];
    expect(expiredSnapshots([c, a, b], { max_count: 2 }, now)).toEqual([a]);
    expect(expiredSnapshots([c, a, b], { max_count: 0 }, now)).toEqual([]);
  });

  it("deletes what is older than max_age, and either rule is enough", () => {
    const now = Date.now();
    const [a, b, c] = [at(30, now), at(10, now), at(1, now)];
    expect(expiredSnapshots([a, b, c], { max_age: "15m" }, now)).toEqual([a]);
    expect(expiredSnapshots([a, b, c], { max_age: "15m", max_count: 1 }, now)).toEqual([a, b]);
  });

  it("names snapshots by the due time, within 63 characters", () => {
    const due = Date.parse("2026-11-25T22:47:13.456Z");
    expect(scheduledName(null, due)).toBe("scheduled-20261125-224713");
    expect(scheduledName("p".repeat(47), due)).toHaveLength(63);
  });

  it("derives a stable phase from the instance id, inside the interval", () => {
    const offset = scheduleOffset(source.id, 60_000);
    expect(offset).toBe(scheduleOffset(source.id, 60_000));
    expect(offset).toBeGreaterThan(0);
    expect(offset).toBeLessThan(60_000);
    expect(dueAt("repeat:snapshot-schedule:abc:1764110833000")).toBe(1764110833000);
    expect(dueAt(undefined)).toBeUndefined();
  });
});
