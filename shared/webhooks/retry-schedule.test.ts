import { describe, expect, it } from "vitest";
import { MAX_RETRY_AFTER_MS, parseRetryAfter, retryDelayMs } from "./retry-schedule.ts";

describe("retry schedule", () => {
  it("jitters each delay within ±20 % and ends when the schedule does", () => {
    const schedule = [1_000, 10_000];
    expect(retryDelayMs(schedule, 1, undefined, () => 0)).toBe(800);
    expect(retryDelayMs(schedule, 1, undefined, () => 1)).toBe(1_200);
    expect(retryDelayMs(schedule, 2, undefined, () => 0.5)).toBe(10_000);
    expect(retryDelayMs(schedule, 3)).toBeUndefined();
  });

  it("honours a longer Retry-After, up to a day, but never shortens the schedule", () => {
    expect(retryDelayMs([1_000], 1, 60_000, () => 0.5)).toBe(60_000);
    expect(retryDelayMs([1_000], 1, 10, () => 0.5)).toBe(1_000);
    expect(retryDelayMs([1_000], 1, 10 * MAX_RETRY_AFTER_MS, () => 0.5)).toBe(MAX_RETRY_AFTER_MS);
  });

  it("reads Retry-After as seconds or as an HTTP date", () => {
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("120", now)).toBe(120_000);
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:01:00 GMT", now)).toBe(60_000);
    expect(parseRetryAfter("soon", now)).toBeUndefined();
    expect(parseRetryAfter(undefined, now)).toBeUndefined();
  });
});
