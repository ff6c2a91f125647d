// The delivery retry schedule: "5s,5m,30m" → delays, with jitter, and Retry-After honoured.

/** The schedule of the issue: a first retry after 5 s, the last about a day after the event. */
export const DEFAULT_RETRY_SCHEDULE = "5s,5m,30m,2h,5h,10h";

/** Retry-After is honoured up to this, so a receiver cannot park a delivery for weeks. */
export const MAX_RETRY_AFTER_MS = 24 * 3_600_000;

/** Each delay is spread by ±this fraction so retries of many deliveries do not arrive in step. */
export const JITTER_FRACTION = 0.2;

/**
 * The delay before the retry that follows failed attempt number `attemptsMade` (1-based), or undefined
 * when the schedule is exhausted. A Retry-After longer than the scheduled delay wins.
 */
export function retryDelayMs(
  schedule: readonly number[],
  attemptsMade: number,
  retryAfterMs?: number,
  random: () => number = Math.random,
): number | undefined {
  const scheduled = schedule[attemptsMade - 1];
  if (scheduled === undefined) return undefined;
  const jittered = Math.round(scheduled * (1 - JITTER_FRACTION + 2 * JITTER_FRACTION * random()));
  return Math.max(jittered, Math.min(retryAfterMs ?? 0, MAX_RETRY_AFTER_MS));
}

/** A Retry-After header (seconds or an HTTP date) in milliseconds from `now`. */
export function parseRetryAfter(header: string | undefined, now = Date.now()): number | undefined {
  if (!header) return undefined;
  if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1_000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}
