import { describe, expect, it } from "vitest";
import { formatGoDuration, goDuration, parseDurationList, parseGoDuration } from "./duration.ts";

describe("Go durations", () => {
  it.each([
    ["0", 0],
    ["30s", 30_000],
    ["1.5h", 5_400_000],
    ["2h45m", 9_900_000],
    ["1m30s", 90_000],
    ["300ms", 300],
    ["1500us", 1.5],
    ["-1m", -60_000],
    [".5s", 500],
  ])("parses %s", (text, ms) => {
    expect(parseGoDuration(text)).toBe(ms);
  });

  it.each(["", "5", "1d", "m", "1 m", "1m 2s", "abc", "1.2.3s"])("refuses %j", (text) => {
    expect(parseGoDuration(text)).toBeUndefined();
  });

  it("formats as Go does", () => {
    expect(formatGoDuration(0)).toBe("0s");
    expect(formatGoDuration(90_000)).toBe("1m30s");
    expect(formatGoDuration(86_400_000)).toBe("24h0m0s");
    expect(formatGoDuration(250)).toBe("250ms");
    expect(formatGoDuration(1_500)).toBe("1.5s");
  });

  it("validates bounds with a message that names them", () => {
    const schema = goDuration({ min: 60_000 });
    expect(schema.safeParse("1m").success).toBe(true);
    expect(schema.safeParse("59s").error?.issues[0]?.message).toBe("must be at least 1m0s");
    expect(schema.safeParse("soon").error?.issues[0]?.message).toContain("not a duration");
  });
});

describe("duration lists (config, webhook retry schedule)", () => {
  it("parses Go durations and whole days", () => {
    expect(parseDurationList("200ms, 5s,5m,2h,1d")).toEqual([200, 5_000, 300_000, 7_200_000, 86_400_000]);
    expect(parseDurationList("1h30m,1.5s")).toEqual([5_400_000, 1_500]);
  });

  it.each(["", "5", "5 s", "-5s", "0s", "0", "5s,,x", "1.5d"])("refuses %j", (text) => {
    expect(parseDurationList(text)).toBeUndefined();
  });
});
