// node --import tsx bench/announce.ts — what anti-entropy costs per interval for one host of --snapshots (10,000)
// snapshot records: before (a full announcement every interval) and after (a digest; and, when one record differs,
// the digest plus the announcement of its bucket). Per case: stream entries and bytes appended, the host's time to list
// its records and append, and the projector's time to apply the entries (wall, and CPU of this process, which runs
// nothing else meanwhile) on a SQLite read model.
//
// A private redis-server and a SQLite read model in a temp dir; the host is a real HostAnnouncer over real record files
// (written once, without fsync); the projector is the API's, seeded by one full announcement. Each case appends its
// entries with no projector running, then starts one and times it until a marker event appended after them is applied;
// a marker-only run gives the fixed part of that (start, one blocking read), printed beside. Medians of --rounds.
// Options: --snapshots <n> (10000), --rounds <n> (5).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { migrateToLatest, openDatabase } from "../api/db/database.ts";
import type { BucketResync } from "../api/read-model/digests.ts";
import { Projector } from "../api/read-model/projector.ts";
import { subjectOf } from "../shared/events/catalog.ts";
import { EventStream } from "../shared/events/stream.ts";
import { createLogger } from "../shared/logger.ts";
import { closeRedis, connectRedis } from "../shared/redis.ts";
import { findRedisServer, REDIS_INSTALL_HINT, startEmbeddedRedis } from "../supervisor/embedded-redis.ts";
import { sampleInstance, sampleSnapshot } from "../test/helpers/resources.ts";
import { benchHost, writeSnapshotRecord } from "./lib/bench-host.ts";
import { median } from "./lib/median.ts";

const { values: flags } = parseArgs({
  options: { snapshots: { type: "string", default: "10000" }, rounds: { type: "string", default: "5" } },
});
const SNAPSHOTS = Number(flags.snapshots);
const ROUNDS = Number(flags.rounds);
const HOST = "bench-host";
const PREFIX = "bench";

const log = createLogger("bench-announce", "warn");
const dataDir = mkdtempSync(path.join(tmpdir(), "snapfleet-bench-announce-"));
const binary = findRedisServer();
if (!binary) throw new Error(REDIS_INSTALL_HINT);
const redisServer = await startEmbeddedRedis(binary, path.join(dataDir, "redis"), log);
const redis = connectRedis(redisServer.url, "worker", 5_000);
const db = openDatabase(path.join(dataDir, "snapfleet.db"));
await migrateToLatest(db);
const events = new EventStream(redis, PREFIX);
const { store, announcer } = benchHost({
  hostId: HOST,
  dataDir: path.join(dataDir, "host"),
  redis,
  prefix: PREFIX,
  events,
  log,
});
const source = sampleInstance({ host_id: HOST });
const marker = sampleInstance({ host_id: "bench-marker" });
/** Markers appended so far (each projector run appends one): its version, and what to leave out of a case's count. */
let markers = 0;
let markerBytes = 0;

/** A record on the host's disk with no event, as a crash between the write and the append leaves it. */
function writeRecord(): void {
  writeSnapshotRecord(store, sampleSnapshot(source, { tags: { batch: "b" } }), source);
}

interface Appended {
  entries: number;
  bytes: number;
}

/** What the stream holds after `streamId`: entries, and bytes of their field names and values. */
async function appendedAfter(streamId: string): Promise<Appended> {
  const entries = await redis.xrange(events.key, `(${streamId}`, "+");
  const bytes = entries.reduce(
    (total, [, fields]) => total + fields.reduce((sum, field) => sum + Buffer.byteLength(field), 0),
    0,
  );
  return { entries: entries.length, bytes };
}

const lastStreamId = async () => (await redis.xrevrange(events.key, "+", "-", "COUNT", 1))[0]?.[0] ?? "0-0";

/**
 * Starts a projector on what the stream holds unapplied, plus a marker event; returns its wall and CPU time until the
 * marker is applied, and the buckets it asked for.
 */
async function project(): Promise<{ wallMs: number; cpuMs: number; asked: BucketResync[] }> {
  const asked: BucketResync[] = [];
  const { event } = await events.append(
    "instance.updated",
    subjectOf.instance(marker.id),
    { instance: marker },
    { version: ++markers },
  );
  const connection = connectRedis(redisServer.url, "worker", 5_000);
  const projector = new Projector({
    db,
    redis: connection,
    prefix: PREFIX,
    log,
    consumer: "bench",
    claimIdleMs: 60_000,
    resyncBuckets: async (resync) => asked.push(resync),
  });
  const applied = new Promise<void>((resolve) =>
    projector.onApplied((entry) => entry.kind === "event" && entry.event.id === event.id && resolve()),
  );
  const cpu = process.cpuUsage();
  const started = performance.now();
  projector.start();
  await applied;
  const wallMs = performance.now() - started;
  const used = process.cpuUsage(cpu);
  await projector.stop();
  await closeRedis(connection);
  return { wallMs, cpuMs: (used.user + used.system) / 1_000, asked };
}

const timed = async (work: () => Promise<unknown>) => {
  const started = performance.now();
  await work();
  return performance.now() - started;
};

/** Runs `interval` ROUNDS times: what it appended, the host's time, and the projector's; medians. */
async function measure(
  name: string,
  interval: () => Promise<{ hostMs: number; projector: { wallMs: number; cpuMs: number } }>,
) {
  const rows: Array<Appended & { hostMs: number; projectorMs: number; projectorCpuMs: number }> = [];
  for (let round = 0; round < ROUNDS; round++) {
    const before = await lastStreamId();
    const markersBefore = markers;
    const { hostMs, projector } = await interval();
    const appended = await appendedAfter(before);
    rows.push({
      entries: appended.entries - (markers - markersBefore),
      bytes: appended.bytes - (markers - markersBefore) * markerBytes,
      hostMs,
      projectorMs: projector.wallMs,
      projectorCpuMs: projector.cpuMs,
    });
  }
  const of = (key: keyof (typeof rows)[number]) => median(rows.map((row) => row[key]));
  return {
    case: name,
    stream_entries: of("entries"),
    stream_bytes: of("bytes"),
    host_ms: Math.round(of("hostMs")),
    projector_wall_ms: Math.round(of("projectorMs")),
    projector_cpu_ms: Math.round(of("projectorCpuMs")),
  };
}

try {
  const writing = performance.now();
  for (let index = 0; index < SNAPSHOTS; index++) writeRecord();
  const writeMs = performance.now() - writing;
  // The read model as the host's start leaves it.
  await announcer.announce("start");
  const seedRun = await project();
  const seeded = await db
    .selectFrom("snapshots")
    .select((eb) => eb.fn.countAll().as("n"))
    .executeTakeFirstOrThrow();
  if (Number(seeded.n) !== SNAPSHOTS) throw new Error(`seeded ${seeded.n} snapshots, not ${SNAPSHOTS}`);
  // The fixed part of each projector run, and the marker's own bytes.
  const markerOnly = [];
  for (let round = 0; round < ROUNDS; round++) {
    const before = await lastStreamId();
    markerOnly.push((await project()).wallMs);
    markerBytes = (await appendedAfter(before)).bytes;
  }

  const results = [
    await measure("before: full announcement", async () => {
      const hostMs = await timed(() => announcer.announce("interval"));
      return { hostMs, projector: await project() };
    }),
    await measure("after: digest, nothing differs", async () => {
      const hostMs = await timed(() => announcer.digest());
      const projector = await project();
      if (projector.asked.length > 0) throw new Error("a digest of an unchanged host differed");
      return { hostMs, projector };
    }),
    await measure("after: digest, one record written with no event", async () => {
      writeRecord();
      const digestMs = await timed(() => announcer.digest());
      const first = await project();
      const [resync] = first.asked;
      if (!resync) throw new Error("the digest did not differ");
      // What the host's job then does, and the projector applying it.
      const announceMs = await timed(() => announcer.announce("bench", { scope: resync.scope }));
      const second = await project();
      return {
        hostMs: digestMs + announceMs,
        projector: { wallMs: first.wallMs + second.wallMs, cpuMs: first.cpuMs + second.cpuMs },
      };
    }),
  ];
  console.log(
    JSON.stringify(
      {
        snapshots: SNAPSHOTS,
        rounds: ROUNDS,
        records_written_ms: Math.round(writeMs),
        seed_projector_ms: Math.round(seedRun.wallMs),
        projector_fixed_ms: Math.round(median(markerOnly)),
        results,
      },
      null,
      2,
    ),
  );
  for (const row of results) {
    console.log(
      `${row.case}: ${row.stream_entries} entries, ${(row.stream_bytes / 1024).toFixed(1)} KiB; host ${row.host_ms} ms; projector ${row.projector_wall_ms} ms wall (${Math.round(median(markerOnly))} ms of it fixed), ${row.projector_cpu_ms} ms CPU`,
    );
  }
} finally {
  await closeRedis(redis);
  await db.destroy();
  await redisServer.stop(2_000);
  rmSync(dataDir, { recursive: true, force: true });
}
