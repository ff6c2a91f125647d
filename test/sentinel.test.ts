// The whole service on Redis behind three sentinels (REDIS_SENTINELS, REDIS_SENTINEL_NAME): a failover in the middle
// of a snapshot pipeline loses nothing. Commands answer 503 while there is no primary (never a 500) and succeed after;
// the compression that was running goes on, and what existed before is still there.
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { eventStreamKey } from "../shared/events/stream.ts";
import { waitForTick } from "./helpers/console.ts";
import { waitFor } from "./helpers/fixtures.ts";
import { type SentinelSet, startSentinelSet } from "./helpers/redis-sentinel.ts";
import { apiConsole, capturedBetween, consolePoint, waitForResume } from "./helpers/resume.ts";
import { type RunningService, startService } from "./helpers/service.ts";

let sentinels: SentinelSet;
let service: RunningService;
/** Every status a call got while the failover ran: a 500 among them fails the test. */
const seen: number[] = [];

beforeAll(async () => {
  sentinels = await startSentinelSet();
  service = await startService({
    REDIS_URL: "",
    REDIS_SENTINELS: sentinels.sentinels,
    REDIS_SENTINEL_NAME: sentinels.name,
    // A compression long enough to still run when the primary changes.
    COMPRESSION_JOB_LOCK_MS: "3000",
  });
}, 120_000);

afterAll(async () => {
  await service?.stop("SIGTERM");
  service?.remove();
  await sentinels?.stop();
});

// biome-ignore lint/suspicious/noExplicitAny: answers are read field by field
type Json = any;

/** Calls until the answer is not a 503/504 or a dropped connection (the window without a primary), within 60 s. */
async function patiently(pathAndQuery: string, init: { method?: string; json?: unknown } = {}) {
  let last = "no answer";
  return waitFor(
    async () => {
      const response = await service.api(pathAndQuery, init).catch(() => undefined);
      if (!response) return undefined;
      seen.push(response.status);
      const text = await response.text();
      const body = (text ? JSON.parse(text) : undefined) as Json;
      if (response.status !== 503 && response.status !== 504) return { status: response.status, body };
      last = `${response.status} ${JSON.stringify(body)}`;
      return undefined;
    },
    { timeoutMs: 60_000, intervalMs: 250, what: `${init.method ?? "GET"} ${pathAndQuery} through the failover` },
  ).catch((error: Error) => {
    throw new Error(`${error.message} (last answer: ${last})`);
  });
}

describe("Redis behind sentinels", () => {
  it("carries a snapshot pipeline across a failover: nothing lost, no 500", async () => {
    const primaryBefore = await sentinels.primaryPort();
    const created = await patiently("/instances", { json: { name: "sentinel-src", size: "128MB" } });
    expect(created.status, JSON.stringify(created.body)).toBe(201);
    await waitForTick(service.api, "sentinel-src", 2);
    const guest = apiConsole((pathAndQuery) => service.api(pathAndQuery), "sentinel-src");
    const before = await consolePoint(guest);
    const snapshot = await patiently("/instances/sentinel-src/snapshots", {
      json: { kind: "Standby", name: "across", compression: { enabled: true, algorithm: "zstd", level: 9 } },
    });
    expect(snapshot.status, JSON.stringify(snapshot.body)).toBe(201);
    const after = await consolePoint(guest);

    // The service writes to the primary the sentinels name (not to a Redis of its own).
    const eventsOn = async (port: number) => {
      const client = new Redis(port, "127.0.0.1", { maxRetriesPerRequest: 1 });
      try {
        return await client.xlen(eventStreamKey("snapfleet"));
      } finally {
        client.disconnect();
      }
    };
    expect(await eventsOn(primaryBefore)).toBeGreaterThan(0);

    // The primary changes while the snapshot compresses.
    const { from, to } = await sentinels.failover();
    expect(from).toBe(primaryBefore);
    expect(to).not.toBe(from);
    const eventsAtFailover = await eventsOn(to);

    const compressed = await waitFor(
      async () => {
        const current = await patiently(`/snapshots/${snapshot.body.id}`);
        return current.body.compression_state === "compressed" ? current.body : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 500, what: "the compression to finish after the failover" },
    );
    expect(compressed.compressed_size_bytes).toBeGreaterThan(0);

    // What existed before the failover is still there, and new work runs on the new primary.
    expect((await patiently("/instances/sentinel-src")).body.state).toBe("Running");
    const fork = await patiently(`/snapshots/${snapshot.body.id}/fork`, { json: { name: "sentinel-fork" } });
    expect(fork.status, JSON.stringify(fork.body)).toBe(201);
    await waitForResume(
      apiConsole((pathAndQuery) => service.api(pathAndQuery), "sentinel-fork"),
      capturedBetween(before, after),
    );
    const listed = (await patiently("/snapshots")).body.map((item: Json) => item.id);
    expect(listed).toContain(snapshot.body.id);
    // The events of the work after the failover went to the new primary.
    expect(await eventsOn(to)).toBeGreaterThan(eventsAtFailover);

    expect((await patiently("/instances/sentinel-fork", { method: "DELETE" })).status).toBe(204);
    expect((await patiently(`/snapshots/${snapshot.body.id}`, { method: "DELETE" })).status).toBe(204);
    expect(seen.filter((status) => status >= 500 && status !== 503 && status !== 504)).toEqual([]);
  }, 300_000);
});
