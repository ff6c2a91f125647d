import { describe, expect, it } from "vitest";
import { parseRange } from "./payload-server.ts";

describe("parseRange", () => {
  it("reads first-last, first- and -suffix ranges, clamped to the file", () => {
    expect(parseRange(undefined, 100)).toBeUndefined();
    expect(parseRange("bytes=0-9", 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange("bytes=90-", 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange("bytes=90-500", 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange("bytes=-10", 100)).toEqual({ start: 90, end: 99 });
  });

  it("calls ranges past the end, reversed or malformed unsatisfiable", () => {
    for (const header of ["bytes=100-", "bytes=5-2", "bytes=-", "items=0-1", "bytes=0-1,4-5"]) {
      expect(parseRange(header, 100), header).toBe("unsatisfiable");
    }
  });
});
