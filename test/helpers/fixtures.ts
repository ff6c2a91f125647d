// Per-test resources: a unique Redis key prefix, a temp data dir, a free port.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { inject } from "vitest";

export { freePort } from "../../supervisor/embedded-redis.ts";

export const testRedisUrl = (): string => inject("redisUrl");

export const uniquePrefix = (label = "t"): string => `test-${label}-${randomBytes(4).toString("hex")}`;

export function tempDir(label = "data"): { dir: string; remove: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), `snapfleet-${label}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Added to a configured deadline where the deadline is the behaviour (a shutdown, a fail-fast): a busy 2-core machine
 * adds seconds, while what the bound guards against (waiting on a hung job or a dead Redis) lasts until the test's own
 * timeout.
 */
export const DEADLINE_SLACK_MS = 10_000;

/** A Redis URL nothing listens on: for "Redis is down" cases. */
export const DEAD_REDIS_URL = "redis://127.0.0.1:1";

export async function waitFor<T>(
  probe: () => Promise<T | undefined> | T | undefined,
  { timeoutMs = 10_000, intervalMs = 50, what = "condition" } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs)); // the poll interval: `probe` has no event
  }
}

/** A response's JSON body, loosely typed for assertions. */
// biome-ignore lint/suspicious/noExplicitAny: test assertions walk arbitrary JSON
export const jsonOf = async (response: Response): Promise<any> => response.json();
