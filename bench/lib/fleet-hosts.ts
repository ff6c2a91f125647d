// A child process of bench/fleet.ts running many simulated worker hosts: no VMs, but each host does what its capture
// worker does towards the control plane, with the real modules. Its presence lease and directory entry
// (workers/host/presence.ts, on a connection of its own), its host queue consumed by a BullMQ worker of its own
// (shared/jobs/worker.ts) that answers `host.announce` as workers/host/handlers.ts does, its full announcement at start
// and a digest every announce interval (workers/host/announcer.ts), and snapshot pipelines at a given rate: each writes
// its records and appends their events as a capture and a compression do (PIPELINE_EVENTS). The announcer lists the
// host's records from memory (`listing: "memory"`, kept beside the files as they are written) or, as a real host does,
// by reading every record file (`"files"`: about 2.5 s of CPU per digest of 10,000 records, bench/README.md
// "Anti-entropy", which on one machine running the whole fleet is the machine's, not the control plane's).
// Left out: the host's compression worker (a second queue consumer per host), its payload server, VM reconciles.
//
// Started with one JSON argument (FleetHostsRequest); then takes "seed" (write every host's records), "start" (bring
// the hosts up), "count" (what they did so far) and "stop" over IPC, answering each with a FleetHostsReply.
import { mkdir } from "node:fs/promises";
import { pathToFileURL } from "node:url";
import type { Redis } from "ioredis";
import { subjectOf } from "../../shared/events/catalog.ts";
import { EventStream } from "../../shared/events/stream.ts";
import { nextStamp } from "../../shared/host-records.ts";
import { queueName } from "../../shared/jobs/catalog.ts";
import { type JobWorker, startJobWorker } from "../../shared/jobs/worker.ts";
import { createLogger } from "../../shared/logger.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import type { Instance } from "../../shared/schemas/instance.ts";
import { publishSnapshotRecord, type SnapshotRecord } from "../../shared/snapshots/store.ts";
import { sampleInstance, sampleSnapshot } from "../../test/helpers/resources.ts";
import { type HostPresence, startHostPresence } from "../../workers/host/presence.ts";
import { type BenchHost, benchHost, RecordsInMemory, writeInstanceRecord, writeSnapshotRecord } from "./bench-host.ts";

/** As workers/compression/compress-snapshot.ts reports a running compression. */
const PROGRESS_INTERVAL_MS = 500;
/** A real capture worker's (HOST_JOB_CONCURRENCY, HOST_JOB_LOCK_MS defaults). */
const HOST_JOB_CONCURRENCY = 32;
const HOST_JOB_LOCK_MS = 30_000;
const COMMAND_TIMEOUT_MS = 5_000;
/** Hosts brought up (or down) at once: each opens three Redis connections. */
const START_PARALLELISM = 25;
/** What one pipeline appends besides its `progress` compression progress events. */
export const PIPELINE_EVENTS = [
  "snapshot.created",
  "snapshot.compression.started",
  "snapshot.compression.completed",
  "instance.updated",
] as const;

export interface FleetHostsRequest {
  redisUrl: string;
  prefix: string;
  /** Each host's data directory is `<dataDir>/<host id>`. */
  dataDir: string;
  hostIds: string[];
  instancesPerHost: number;
  snapshotsPerHost: number;
  announceIntervalMs: number;
  /** How the announcer lists the host's records: from memory, or by reading every file as a real host does. */
  listing: "memory" | "files";
  pipelinesPerHostPerMinute: number;
  /** `snapshot.compression.progress` events per pipeline, one every PROGRESS_INTERVAL_MS. */
  progressEvents: number;
}

export interface FleetHostsCounts {
  pipelines: number;
  events: number;
  digests: number;
  /** `host.announce` jobs answered (bucket-scoped re-announcements the read model asked for). */
  announceJobs: number;
  errors: number;
  firstError?: string;
}

export type FleetHostsReply =
  | { step: "seed"; ms: number }
  | { step: "start"; ms: number }
  | { step: "count"; counts: FleetHostsCounts }
  | { step: "stop"; counts: FleetHostsCounts };

interface RunningHost {
  host: BenchHost;
  records: RecordsInMemory;
  redis: Redis;
  presence: HostPresence;
  worker: JobWorker;
  /** The host's instances (the pipelines' sources). */
  instances: Instance[];
  /** The digest's timers (the first beat, then its interval). */
  timers: NodeJS.Timeout[];
  nextPipeline?: NodeJS.Timeout;
}

const log = createLogger("bench-fleet-hosts", "error");
const counts: FleetHostsCounts = { pipelines: 0, events: 0, digests: 0, announceJobs: 0, errors: 0 };
let stopping = false;

const [, entry, requestJson] = process.argv;
if (entry && requestJson && import.meta.url === pathToFileURL(entry).href) {
  const request = JSON.parse(requestJson) as FleetHostsRequest;
  const seeded = new Map<string, RecordsInMemory>();
  let running: RunningHost[] = [];
  process.on("message", async (step: FleetHostsReply["step"]) => {
    const started = performance.now();
    try {
      if (step === "seed") {
        for (const hostId of request.hostIds) seeded.set(hostId, seedHost(request, hostId));
        process.send?.({ step, ms: performance.now() - started } satisfies FleetHostsReply);
      } else if (step === "start") {
        running = await inBatches(request.hostIds, (hostId) => startHost(request, hostId, seeded.get(hostId)!));
        process.send?.({ step, ms: performance.now() - started } satisfies FleetHostsReply);
      } else if (step === "count") {
        process.send?.({ step, counts: { ...counts } } satisfies FleetHostsReply);
      } else {
        stopping = true;
        await inBatches(running, stopHost);
        process.send?.({ step, counts } satisfies FleetHostsReply, () => process.exit(0));
      }
    } catch (error) {
      console.error(error);
      process.exit(1);
    }
  });
}

/** Writes the host's records (instances, then snapshots of them) as its captures left them; returns them. */
function seedHost(request: FleetHostsRequest, hostId: string): RecordsInMemory {
  const records = new RecordsInMemory();
  const { host } = hostOn(request, hostId, undefined, records);
  const instances = Array.from({ length: Math.max(1, request.instancesPerHost) }, (_, index) =>
    sampleInstance({ host_id: hostId, name: `${hostId}-vm-${index}` }),
  );
  for (const instance of instances) records.instances.set(instance.id, writeInstanceRecord(host.instances, instance));
  for (let index = 0; index < request.snapshotsPerHost; index++) {
    const source = instances[index % instances.length]!;
    const snapshot = sampleSnapshot(source, { tags: { batch: `b${index % 100}` } });
    records.snapshots.set(snapshot.id, writeSnapshotRecord(host.store, snapshot, source));
  }
  return records;
}

function hostOn(request: FleetHostsRequest, hostId: string, redis: Redis | undefined, records: RecordsInMemory) {
  // Seeding only writes files: the stores never touch Redis then.
  const connection = redis ?? (undefined as unknown as Redis);
  const events = new EventStream(connection, request.prefix);
  const host = benchHost({
    hostId,
    dataDir: `${request.dataDir}/${hostId}`,
    redis: connection,
    prefix: request.prefix,
    events,
    log,
    records: request.listing === "memory" ? records : undefined,
  });
  return { host, events };
}

/** Brings one host up in a capture worker's order: full announcement, presence, queue consumer, timers. */
async function startHost(request: FleetHostsRequest, hostId: string, records: RecordsInMemory): Promise<RunningHost> {
  const redis = connectRedis(request.redisUrl, "worker", COMMAND_TIMEOUT_MS);
  redis.on("error", (error) => countError(error));
  const { host, events } = hostOn(request, hostId, redis, records);
  await host.announcer.announce("start");
  const presence = await startHostPresence({
    redisUrl: request.redisUrl,
    prefix: request.prefix,
    commandTimeoutMs: COMMAND_TIMEOUT_MS,
    host: { id: hostId, hypervisors: ["qemu"], started_at: new Date().toISOString(), pid: process.pid },
    log,
  });
  const worker = startJobWorker({
    queue: queueName("host", hostId),
    prefix: request.prefix,
    connection: redis,
    handlers: {
      "host.announce": async ({ reason, scope }) => {
        await host.announcer.announce(`requested: ${reason}`, { scope });
        counts.announceJobs++;
        return { hostId, receivedAt: new Date().toISOString() };
      },
    },
    concurrency: HOST_JOB_CONCURRENCY,
    lockDurationMs: HOST_JOB_LOCK_MS,
    log,
  });
  // Hosts start at different times: each digest timer and pipeline clock runs on its own phase.
  const timers: NodeJS.Timeout[] = [];
  repeatFromRandomPhase(
    request.announceIntervalMs,
    async () => {
      await host.announcer.digest();
      counts.digests++;
    },
    timers,
  );
  const instances = [...records.instances.values()].map((record) => record.instance);
  const running: RunningHost = { host, records, redis, presence, worker, instances, timers };
  if (request.pipelinesPerHostPerMinute > 0) schedulePipeline(request, running, events);
  return running;
}

async function stopHost(running: RunningHost): Promise<void> {
  for (const timer of running.timers) clearInterval(timer);
  clearTimeout(running.nextPipeline);
  await running.worker.close(2_000);
  await running.presence.stop();
  await closeRedis(running.redis);
}

/** Runs `task` every `ms` from a random first moment, skipping a beat while the last run still goes. */
function repeatFromRandomPhase(ms: number, task: () => Promise<void>, timers: NodeJS.Timeout[]): void {
  let busy = false;
  const beat = () => {
    if (busy || stopping) return;
    busy = true;
    task()
      .catch(countError)
      .finally(() => {
        busy = false;
      });
  };
  timers.push(
    setTimeout(() => {
      beat();
      timers.push(setInterval(beat, ms));
    }, Math.random() * ms),
  );
}

/** Pipelines arrive as a Poisson process of the configured rate per host. */
function schedulePipeline(request: FleetHostsRequest, running: RunningHost, events: EventStream): void {
  const meanMs = 60_000 / request.pipelinesPerHostPerMinute;
  running.nextPipeline = setTimeout(
    () => {
      if (stopping) return;
      runPipeline(request, running, events).catch(countError);
      schedulePipeline(request, running, events);
    },
    -Math.log(1 - Math.random()) * meanMs,
  );
}

/**
 * One snapshot of one of the host's instances, compressed: the records written and events appended as
 * workers/host/snapshots.ts (capture) and workers/compression/compress-snapshot.ts (under the snapshot's Redis lock)
 * do, plus one state change of the instance (`instance.updated`, as a stop or start commits it).
 */
async function runPipeline(request: FleetHostsRequest, running: RunningHost, events: EventStream): Promise<void> {
  const { store, instances } = running.host;
  const { records } = running;
  const source = running.instances[Math.floor(Math.random() * running.instances.length)]!;
  const snapshot = sampleSnapshot(source, { compression: { enabled: true, algorithm: "zstd", level: 1 } });
  let record: SnapshotRecord = {
    snapshot,
    source,
    memory_layout: "file",
    memory_payload: "memory.raw",
    ...nextStamp(undefined, "snapshot.created", null),
  };
  await mkdir(store.dir(snapshot.id), { recursive: true }); // the capture's staged payload directory, committed
  await store.write(record);
  records.snapshots.set(snapshot.id, record); // a listing between the write and the append sees it, as on disk
  await publishSnapshotRecord(events, record);
  const change = async (
    type: "snapshot.compression.started" | "snapshot.compression.completed",
    changes: Partial<SnapshotRecord["snapshot"]>,
  ) =>
    store.withLock(snapshot.id, async () => {
      record = { ...record, snapshot: { ...record.snapshot, ...changes }, ...nextStamp(record, type, null) };
      await store.write(record);
      records.snapshots.set(snapshot.id, record);
      await publishSnapshotRecord(events, record);
    });
  await change("snapshot.compression.started", { compression_state: "compressing" });
  const total = snapshot.size_bytes;
  for (let step = 1; step <= request.progressEvents && !stopping; step++) {
    await new Promise((resolve) => setTimeout(resolve, PROGRESS_INTERVAL_MS));
    await events.append(
      "snapshot.compression.progress",
      subjectOf.snapshot(snapshot.id),
      {
        snapshot: record.snapshot,
        bytes_done: Math.floor((total * step) / (request.progressEvents + 1)),
        bytes_total: total,
      },
      { version: record.version },
    );
    counts.events++;
  }
  if (stopping) return;
  await change("snapshot.compression.completed", {
    compression_state: "compressed",
    compressed_size_bytes: Math.floor(total / 4),
  });
  const instance = await instances.read(source.id);
  const state = instance.state === "Running" ? "Stopped" : "Running";
  await instances.commit({ ...instance, state }, "instance.updated");
  records.instances.set(source.id, await instances.readRecord(source.id));
  counts.events += PIPELINE_EVENTS.length;
  counts.pipelines++;
}

async function inBatches<T, R>(items: T[], work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = [];
  for (let index = 0; index < items.length; index += START_PARALLELISM) {
    results.push(...(await Promise.all(items.slice(index, index + START_PARALLELISM).map(work))));
  }
  return results;
}

function countError(error: Error): void {
  if (stopping) return;
  counts.errors++;
  counts.firstError ??= error.message;
}
