// Go duration strings ("300ms", "1.5h", "2h45m", "1m30s"), as the Hypeman API takes them, to milliseconds and back.
import { z } from "./zod.ts";

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
};
const DURATION = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$/;
const PART = /(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)/g;

/** Milliseconds of a Go duration, or undefined when it is not one. "0" is zero, as in Go. */
export function parseGoDuration(text: string): number | undefined {
  if (text === "0" || text === "+0" || text === "-0") return 0;
  if (!DURATION.test(text)) return undefined;
  let total = 0;
  for (const [, value, unit] of text.matchAll(PART)) total += Number(value) * UNIT_MS[unit!]!;
  return text.startsWith("-") ? -total : total;
}

const WHOLE_DAYS = /^(\d+)d$/;

/**
 * A comma-separated list of positive durations ("200ms, 5s,1h30m,7d"), each a Go duration or whole days, in
 * milliseconds; undefined when any item is not one. What config and the webhook retry schedule take.
 */
export function parseDurationList(text: string): number[] | undefined {
  const items = text
    .split(",")
    .map((item) => item.trim())
    .filter(Boolean);
  const delays = items.map((item) => {
    const days = WHOLE_DAYS.exec(item);
    return days ? Number(days[1]) * 86_400_000 : (parseGoDuration(item) ?? Number.NaN);
  });
  return delays.length > 0 && delays.every((delay) => delay > 0) ? delays : undefined;
}

/** A duration in Go's own format, e.g. 90 000 ms → "1m30s", 0 → "0s". */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return "0s";
  const sign = ms < 0 ? "-" : "";
  let rest = Math.abs(ms);
  if (rest < 1_000) return `${sign}${rest}ms`;
  const hours = Math.floor(rest / 3_600_000);
  rest -= hours * 3_600_000;
  const minutes = Math.floor(rest / 60_000);
  rest -= minutes * 60_000;
  const seconds = `${Math.round(rest) / 1_000}s`;
  if (hours) return `${sign}${hours}h${minutes}m${seconds}`;
  return minutes ? `${sign}${minutes}m${seconds}` : `${sign}${seconds}`;
}

/** A zod string that must be a Go duration between `min` and `max` milliseconds (inclusive). */
export function goDuration(bounds: { min?: number; max?: number } = {}) {
  const { min = 0, max = Number.POSITIVE_INFINITY } = bounds;
  return z
    .string()
    .max(64)
    .superRefine((text, context) => {
      const ms = parseGoDuration(text);
      if (ms === undefined) {
        context.addIssue({ code: "custom", message: `${JSON.stringify(text)} is not a duration such as 30s or 5m` });
      } else if (ms < min || ms > max) {
        const range =
          max === Number.POSITIVE_INFINITY
            ? `at least ${formatGoDuration(min)}`
            : `${formatGoDuration(min)} to ${formatGoDuration(max)}`;
        context.addIssue({ code: "custom", message: `must be ${range}` });
      }
    })
    .openapi({ description: "A Go duration, e.g. 30s, 5m, 1h30m", example: "5m" });
}
