// Anti-entropy that costs what changed (issue 21): on its interval a host appends a digest of what it owns, and only
// the buckets where the read model differs are announced again. A record the host wrote with no event (it died between
// the write and the append) shows within about an interval, and one removed by hand goes, both with no full
// announcement. Real Redis, the whole service; no guest is booted (the records are written by hand, as a crash leaves
// them).
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bucketOf } from "../shared/events/digest.ts";
import { eventStreamKey, newEventId } from "../shared/events/stream.ts";
import { jsonOf, waitFor } from "./helpers/fixtures.ts";
import { startTestRedis, type TestRedis } from "./helpers/redis-server.ts";
import { sampleInstance, sampleSnapshot } from "./helpers/resources.ts";
import { type RunningService, startService } from "./helpers/service.ts";

const INTERVAL_MS = 2_000;
/** Converging "within about an interval": the next digest, the bucket announcement it asks for, and slack. */
const CONVERGE_MS = 2 * INTERVAL_MS + 5_000;
const STREAM = eventStreamKey("snapfleet");

let redis: TestRedis;
let client: Redis;
let service: RunningService;

beforeAll(async () => {
  redis = await startTestRedis();
  client = new Redis(redis.url);
  service = await startService({ REDIS_URL: redis.url, ANNOUNCE_INTERVAL_MS: String(INTERVAL_MS) });
  await waitFor(
    async () => {
      const hosts = await service.api("/hosts").then((response) => (response.ok ? jsonOf(response) : []));
      return hosts.some((host: { online: boolean }) => host.online) ? true : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 250, what: "the host to be online" },
  );
  // The full announcements of the host's start and of the API's start are in by then.
  await new Promise((resolve) => setTimeout(resolve, 2 * INTERVAL_MS));
}, 120_000);

afterAll(async () => {
  await service?.stop("SIGTERM");
  service?.remove();
  client?.disconnect();
  await redis?.stop();
});

type Fields = Record<string, string>;

async function lastStreamId(): Promise<string> {
  return (await client.xrevrange(STREAM, "+", "-", "COUNT", 1))[0]?.[0] ?? "0-0";
}

async function entriesAfter(streamId: string): Promise<Fields[]> {
  const entries = await client.xrange(STREAM, `(${streamId}`, "+");
  return entries.map(([, fields]) => {
    const byName: Fields = {};
    for (let index = 0; index + 1 < fields.length; index += 2) byName[fields[index]!] = fields[index + 1]!;
    return byName;
  });
}

interface AnnouncementPart {
  host_id: string;
  snapshots: Array<{ snapshot: { id: string } }>;
  scope?: { bucket_count: number; buckets: number[] };
}

/** The host's announcement parts since `streamId`. */
async function announcementsAfter(streamId: string): Promise<AnnouncementPart[]> {
  return (await entriesAfter(streamId))
    .filter((fields) => fields.announcement !== undefined)
    .map((fields) => JSON.parse(fields.announcement!) as AnnouncementPart)
    .filter((part) => part.host_id === service.hostId());
}

/** Writes a snapshot record into the host's data dir with no event, as a crash after the write leaves it. */
function writeRecordWithoutEvent(): string {
  const minuteAgo = new Date(Date.now() - 60_000).toISOString();
  const source = sampleInstance({ host_id: service.hostId(), created_at: minuteAgo });
  const snapshot = sampleSnapshot(source, { created_at: minuteAgo, kind: "Stopped" });
  const record = {
    snapshot,
    source,
    memory_layout: "none",
    memory_payload: null,
    version: 1,
    last_event: { id: newEventId(), type: "snapshot.created", occurred_at: minuteAgo, job_id: null },
  };
  const dir = path.join(service.dataDir, "snapshots", snapshot.id);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "snapshot.json"), `${JSON.stringify(record, null, 2)}\n`);
  return snapshot.id;
}

const status = async (id: string) => (await service.api(`/snapshots/${id}`)).status;

describe("anti-entropy by digest", () => {
  let id: string;

  it("a record written with no event shows within about an interval, through its bucket only", async () => {
    const before = await lastStreamId();
    id = writeRecordWithoutEvent();
    await waitFor(async () => ((await status(id)) === 200 ? true : undefined), {
      timeoutMs: CONVERGE_MS,
      what: `snapshot ${id} to show after the host's next digest`,
    });
    expect((await jsonOf(await service.api(`/snapshots/${id}`))).host_id).toBe(service.hostId());
    const parts = await announcementsAfter(before);
    // No full announcement: every part since is scoped to some buckets, and the record came in one of them.
    expect(parts.length).toBeGreaterThan(0);
    for (const part of parts) {
      expect(part.scope, "a full announcement was sent").toBeDefined();
      expect(part.scope!.buckets.length).toBeLessThan(part.scope!.bucket_count);
    }
    const carrying = parts.filter((part) => part.snapshots.some((entry) => entry.snapshot.id === id));
    expect(carrying.length).toBeGreaterThan(0);
    for (const part of carrying)
      expect(part.scope!.buckets).toContain(bucketOf(`snapshot:${id}`, part.scope!.bucket_count));
  });

  it("a record removed by hand goes after two bucket announcements lacked it, with no full announcement", async () => {
    const before = await lastStreamId();
    rmSync(path.join(service.dataDir, "snapshots", id), { recursive: true });
    await waitFor(async () => ((await status(id)) === 404 ? true : undefined), {
      timeoutMs: CONVERGE_MS + INTERVAL_MS,
      what: `snapshot ${id} to be gone after two of the host's digests`,
    });
    const parts = await announcementsAfter(before);
    expect(parts.length).toBeGreaterThanOrEqual(2);
    for (const part of parts) expect(part.scope, "a full announcement was sent").toBeDefined();
  });

  it("when nothing differs, an interval appends one small digest and no announcement", async () => {
    // Let the removal's last resync settle, then watch two intervals.
    await new Promise((resolve) => setTimeout(resolve, INTERVAL_MS));
    const before = await lastStreamId();
    await new Promise((resolve) => setTimeout(resolve, 2 * INTERVAL_MS + 500));
    const entries = await entriesAfter(before);
    const digests = entries.filter((fields) => fields.digest !== undefined);
    expect(digests.length).toBeGreaterThanOrEqual(1);
    for (const digest of digests) expect(digest.digest!.length).toBeLessThan(8_192);
    expect(await announcementsAfter(before)).toEqual([]);
  });
});
