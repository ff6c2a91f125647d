// npm run bench:fleet — how far one control plane goes: the real API (--replicas processes of api/main.ts, projector
// included) on a private redis-server and a throw-away PostgreSQL database, under N simulated worker hosts, for each
// case of --hosts × --resources.
//
// The hosts run in --sim-processes child processes (bench/lib/fleet-hosts.ts): no VMs, but each holds its presence
// lease, consumes its own host queue, announces its full state at start, appends a digest every --announce-interval-ms
// and runs snapshot pipelines (capture + compression + an instance state change: 4 + --progress-events events) at
// --pipelines-per-minute per host, with the real modules over real record files (the digests list the records from
// memory unless --host-listing files: bench/lib/fleet-hosts.ts says why). A case seeds by writing the hosts'
// records (a tenth of the resources instances, the rest snapshots of them) and starting the hosts: their start
// announcements fill the empty read model, timed until it holds every resource. Then, for --seconds:
// - projector lag: a marker event (instance.updated) appended every second, timed from its XADD until its row is in
//   processed_events (polled every 20 ms); the read-model group's undelivered entries (XINFO GROUPS lag) beside it;
// - reads: GET /snapshots?limit=100 (walking up to 20 pages) and GET /snapshots/{id}, round-robin over the replicas
//   at --read-rate requests/s from a child process (bench/lib/api-load.ts), p50/p99/max per route;
// - the stream's length and bytes (MEMORY USAGE), Redis used_memory and the growth of what is not the stream (the
//   API trims the stream once a minute), connected clients;
// - CPU of each replica, of the simulated hosts, of redis-server and of this database's PostgreSQL backends
//   (/proc/<pid>/stat), in % of one core.
// Each case then says which stated threshold it crosses (bench/lib/fleet-verdict.ts); the output ends with the first
// case that crosses one. One JSON document, then one line per case; the load average at each case's start and end.
// Options: --hosts 10,100,1000 --resources 1000,10000 --seconds 30 --replicas 2 --sim-processes 4 --read-rate 20
// --pipelines-per-minute 1 --progress-events 8 --announce-interval-ms 15000 --host-listing memory|files
// --dialect postgres|sqlite.
import { type ChildProcess, fork, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type { Redis } from "ioredis";
import { sql } from "kysely";
import { type Db, migrateToLatest, openDatabase } from "../api/db/database.ts";
import { READ_MODEL_GROUP } from "../api/read-model/projector.ts";
import { subjectOf } from "../shared/events/catalog.ts";
import { EventStream, eventStreamKey } from "../shared/events/stream.ts";
import { createLogger } from "../shared/logger.ts";
import { closeRedis, connectRedis } from "../shared/redis.ts";
import { findRedisServer, freePort, REDIS_INSTALL_HINT, startEmbeddedRedis } from "../supervisor/embedded-redis.ts";
import { sampleInstance } from "../test/helpers/resources.ts";
import { startLoad } from "./lib/api-load.ts";
import { type BenchDatabase, createBenchDatabase, POSTGRES_URL } from "./lib/bench-database.ts";
import {
  type FleetHostsCounts,
  type FleetHostsReply,
  type FleetHostsRequest,
  PIPELINE_EVENTS,
} from "./lib/fleet-hosts.ts";
import { breaksFirst, type CaseFigures, crossings, DEFAULT_THRESHOLDS, machineSaturated } from "./lib/fleet-verdict.ts";
import { summarize } from "./lib/summarize.ts";

const { values: flags } = parseArgs({
  options: {
    hosts: { type: "string", default: "10,100,1000" },
    resources: { type: "string", default: "1000,10000" },
    seconds: { type: "string", default: "30" },
    replicas: { type: "string", default: "2" },
    "sim-processes": { type: "string", default: "4" },
    "read-rate": { type: "string", default: "20" },
    "pipelines-per-minute": { type: "string", default: "1" },
    "progress-events": { type: "string", default: "8" },
    "announce-interval-ms": { type: "string", default: "15000" },
    "host-listing": { type: "string", default: "memory" },
    dialect: { type: "string", default: "postgres" },
  },
});
const numbers = (list: string) => list.split(",").map(Number);
const SECONDS = Number(flags.seconds);
const REPLICAS = Number(flags.replicas);
const SIM_PROCESSES = Number(flags["sim-processes"]);
const READ_RATE = Number(flags["read-rate"]);
const PIPELINES_PER_MINUTE = Number(flags["pipelines-per-minute"]);
const PROGRESS_EVENTS = Number(flags["progress-events"]);
const ANNOUNCE_INTERVAL_MS = Number(flags["announce-interval-ms"]);
const DIALECT = flags.dialect === "sqlite" ? "sqlite" : "postgres";
const HOST_LISTING = flags["host-listing"] === "files" ? "files" : "memory";
const PREFIX = "fleet";
const API_KEY = "bench-key-0123456789abcdef";
/** One resource in INSTANCE_SHARE is an instance, the rest are snapshots of them. */
const INSTANCE_SHARE = 0.1;
const MARKER_EVERY_MS = 1_000;
const MARKER_POLL_MS = 20;
const CONVERGE_TIMEOUT_MS = 600_000;
const READ_TIMEOUT_MS = 5_000;
const PAGES_WALKED = 20;
const CLOCK_TICKS = 100; // getconf CLK_TCK on Linux
const WEBHOOK_SECRET_KEY = randomBytes(32).toString("base64");
const FLEET_SECRET = randomBytes(24).toString("hex");
const THRESHOLDS = { ...DEFAULT_THRESHOLDS, announceIntervalMs: ANNOUNCE_INTERVAL_MS };

const log = createLogger("bench-fleet", "warn");
const redisBinary = findRedisServer();
if (!redisBinary) throw new Error(REDIS_INSTALL_HINT);

const cases: Array<{ hosts: number; resources: number }> = [];
for (const hosts of numbers(flags.hosts))
  for (const resources of numbers(flags.resources)) cases.push({ hosts, resources });
const results: Array<Record<string, unknown>> = [];
const figures: CaseFigures[] = [];
const lines: string[] = [];
for (const shape of cases) {
  const result = await runCase(shape.hosts, shape.resources);
  results.push(result.json);
  if (result.figures) figures.push(result.figures);
  lines.push(result.line);
  console.error(result.line); // progress while the matrix runs
}
const first = breaksFirst(figures, THRESHOLDS);
console.log(
  JSON.stringify(
    {
      machine: `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}`,
      dialect: DIALECT,
      replicas: REPLICAS,
      sim_processes: SIM_PROCESSES,
      seconds: SECONDS,
      read_rate_per_second: READ_RATE,
      pipelines_per_host_per_minute: PIPELINES_PER_MINUTE,
      events_per_pipeline: PIPELINE_EVENTS.length + PROGRESS_EVENTS,
      announce_interval_ms: ANNOUNCE_INTERVAL_MS,
      host_listing: HOST_LISTING,
      thresholds: THRESHOLDS,
      cases: results,
      breaks_first: first ?? "no case crossed a threshold",
    },
    null,
    2,
  ),
);
for (const line of lines) console.log(line);
console.log(
  first
    ? `breaks first: ${first.case}: ${first.crossings.map((crossing) => `${crossing.quantity} (${crossing.says})`).join("; ")}${first.machine ? `; but ${first.machine}` : ""}`
    : "breaks first: no case crossed a threshold",
);

interface Replica {
  child: ChildProcess;
  baseUrl: string;
}

async function runCase(hosts: number, resources: number) {
  const name = `${hosts} hosts × ${resources} resources`;
  const loadAtStart = loadavg();
  const database = DIALECT === "postgres" ? await createBenchDatabase() : undefined;
  if (DIALECT === "postgres" && !database) {
    const says = `skipped: nothing answers at ${POSTGRES_URL} (set BENCH_POSTGRES_URL)`;
    return { json: { case: name, result: says }, line: `${name}: ${says}`, figures: undefined };
  }
  const dataDir = mkdtempSync(path.join(tmpdir(), "snapfleet-bench-fleet-"));
  const redisServer = await startEmbeddedRedis(redisBinary!, path.join(dataDir, "redis"), log);
  const redis = connectRedis(redisServer.url, "worker", 10_000);
  const replicas: Replica[] = [];
  const sims: ChildProcess[] = [];
  let db: Db | undefined;
  try {
    const target = { url: database?.url, file: path.join(dataDir, "read-model.db") };
    db = openDatabase(target);
    await migrateToLatest(db); // before the replicas, so that two do not race to migrate
    for (let index = 0; index < REPLICAS; index++) {
      replicas.push(await startReplica(index, dataDir, redisServer.url, target));
    }
    await Promise.all(replicas.map((replica) => waitHealthy(replica.baseUrl)));

    const perHost = resources / hosts;
    const instancesPerHost = Math.max(1, Math.round(perHost * INSTANCE_SHARE));
    const snapshotsPerHost = Math.max(0, Math.round(perHost) - instancesPerHost);
    const hostIds = Array.from({ length: hosts }, (_, index) => `sim-${String(index).padStart(4, "0")}`);
    const processes = Math.min(SIM_PROCESSES, hosts);
    for (let index = 0; index < processes; index++) {
      sims.push(
        startSims({
          redisUrl: redisServer.url,
          prefix: PREFIX,
          dataDir: path.join(dataDir, "hosts"),
          hostIds: hostIds.filter((_, host) => host % processes === index),
          instancesPerHost,
          snapshotsPerHost,
          announceIntervalMs: ANNOUNCE_INTERVAL_MS,
          listing: HOST_LISTING,
          pipelinesPerHostPerMinute: PIPELINES_PER_MINUTE,
          progressEvents: PROGRESS_EVENTS,
        }),
      );
    }
    const seeded = hosts * (instancesPerHost + snapshotsPerHost);
    const writing = await Promise.all(sims.map((sim) => step(sim, "seed")));
    const startedAt = performance.now();
    const starting = await Promise.all(sims.map((sim) => step(sim, "start")));
    const converged = await waitForRows(db, seeded, CONVERGE_TIMEOUT_MS);
    const convergedMs = performance.now() - startedAt;
    // A PostgreSQL that has been running holds statistics of its tables (bench/api.ts says why this matters).
    if (database) await sql`analyze`.execute(db);

    // The single reads' ids (the paged and single routes use no tags).
    const snapshots = (await db.selectFrom("snapshots").select("id").limit(2_000).execute()).map(({ id }) => ({
      id,
      tags: {},
    }));
    const load = await startLoad(
      {
        role: "reads",
        baseUrl: replicas[0]!.baseUrl,
        moreBaseUrls: replicas.slice(1).map((replica) => replica.baseUrl),
        apiKey: API_KEY,
        redisUrl: redisServer.url,
        redisPrefix: PREFIX,
        rate: READ_RATE,
        seconds: SECONDS,
        burst: 0,
        timeoutMs: READ_TIMEOUT_MS,
        routes: ["paged", "single"],
        maxPages: PAGES_WALKED,
      },
      { snapshots, burstSnapshots: [] },
    );

    const pids = await measuredPids(redis, db, replicas, sims, database);
    const cpuBefore = cpuTicksOf(pids);
    const machineBefore = machineTicks();
    const memoryBefore = await redisInfo(redis, "memory", "used_memory");
    const lengthBefore = await redis.xlen(eventStreamKey(PREFIX));
    const streamBytesBefore = await streamBytes(redis);
    const countsBefore = sumCounts(await Promise.all(sims.map((sim) => step(sim, "count"))));
    const xaddsBefore = await redisInfo(redis, "commandstats", "cmdstat_xadd:calls=");
    const windowStart = performance.now();
    const probe = startLagProbe(redis, db);
    const reads = await load.go();
    const lag = await probe.stop();
    const windowSeconds = (performance.now() - windowStart) / 1_000;
    const cpuAfter = cpuTicksOf(pids);
    const machineAfter = machineTicks();
    const memoryAfter = await redisInfo(redis, "memory", "used_memory");
    const stream = {
      length_at_start: lengthBefore,
      length_at_end: await redis.xlen(eventStreamKey(PREFIX)),
      bytes_at_start: streamBytesBefore,
      bytes_at_end: await streamBytes(redis),
      group_lag_max: lag.groupLagMax,
      group_pending_max: lag.groupPendingMax,
    };
    const clients = await redisInfo(redis, "clients", "connected_clients");
    const xadds = (await redisInfo(redis, "commandstats", "cmdstat_xadd:calls=")) - xaddsBefore;
    const counts = minusCounts(sumCounts(await Promise.all(sims.map((sim) => step(sim, "count")))), countsBefore);
    await Promise.all(sims.map((sim) => step(sim, "stop")));
    // % of one core over the window (a process gone meanwhile counts nothing, not a negative).
    const percentOf = (pid: number) =>
      (Math.max(0, cpuAfter.get(pid)! - cpuBefore.get(pid)!) / CLOCK_TICKS / windowSeconds) * 100;
    const percent = (group: keyof typeof pids) => pids[group].reduce((sum, pid) => sum + percentOf(pid), 0);
    const replicaCpu = pids.replicas.map(percentOf);
    const oursCpu = replicaCpu.reduce((a, b) => a + b, 0) + percent("sims") + percent("redis") + percent("postgres");
    // The whole machine, other work included (the simulated hosts and the control plane share its cores with it).
    const machineCpu =
      ((machineAfter.busy - machineBefore.busy) / Math.max(1, machineAfter.total - machineBefore.total)) * 100;
    const cpu = {
      replicas: replicaCpu.map(Math.round),
      simulated_hosts: Math.round(percent("sims")),
      redis: Math.round(percent("redis")),
      postgres_backends: Math.round(percent("postgres")),
      all_of_these_of_the_machine_percent: Math.round(oursCpu / cpus().length),
      machine_busy_percent: Math.round(machineCpu),
    };
    const readSummaries = {
      paged: summarize(reads.latencies.paged.map((sample) => sample.ms)),
      single: summarize(reads.latencies.single.map((sample) => sample.ms)),
    };
    // The stream is trimmed to what every group has read once a minute (api/maintenance.ts), so a window shorter than
    // that sees it only grow: what is judged is the growth of the rest (queues, directory, locks, bookkeeping).
    const growthPerHour =
      ((memoryAfter - stream.bytes_at_end - (memoryBefore - streamBytesBefore)) / windowSeconds) * 3_600;
    const caseFigures: CaseFigures = {
      case: name,
      converged,
      projectorLagMs: { p99: lag.summary.p99_ms, firstThirdMean: lag.firstThirdMean, lastThirdMean: lag.lastThirdMean },
      unappliedMarkers: { count: lag.unapplied, of: lag.markers },
      readP99Ms: Math.max(readSummaries.paged.p99_ms, readSummaries.single.p99_ms),
      replicaCpuPercent: replicaCpu,
      redisGrowthBytesPerHour: growthPerHour,
      machineCpuPercent: machineCpu,
      hostErrors: counts.errors,
    };
    const crossed = crossings(caseFigures, THRESHOLDS);
    const saturated = machineSaturated(caseFigures, THRESHOLDS);
    const loadAtEnd = loadavg();
    const json = {
      case: name,
      hosts,
      resources: seeded,
      instances_per_host: instancesPerHost,
      snapshots_per_host: snapshotsPerHost,
      load_average: { start: loadAtStart.map(round2), end: loadAtEnd.map(round2) },
      seed: {
        records_written_ms: Math.round(Math.max(...writing.map((reply) => reply.ms))),
        hosts_started_ms: Math.round(Math.max(...starting.map((reply) => reply.ms))),
        read_model_full_ms: Math.round(convergedMs),
        converged,
        hosts_did_until_window: countsBefore,
      },
      window_seconds: Math.round(windowSeconds),
      hosts_did: { ...counts, events_per_second: Math.round(counts.events / windowSeconds) },
      stream_appends_per_second: Math.round(xadds / windowSeconds),
      projector_entries_per_second: Math.round(lag.projectorEntriesPerSecond),
      projector_lag_ms: {
        ...lag.summary,
        first_third_mean: Math.round(lag.firstThirdMean),
        last_third_mean: Math.round(lag.lastThirdMean),
        unapplied_at_end: lag.unapplied,
      },
      stream,
      redis: {
        used_memory_start: memoryBefore,
        used_memory_end: memoryAfter,
        growth_besides_stream_bytes_per_hour: Math.round(growthPerHour),
        connected_clients: clients,
      },
      reads: { ...readSummaries, failed: reads.failures.paged + reads.failures.single },
      cpu_percent_of_one_core: cpu,
      replica_warnings: replicaWarnings(dataDir),
      crossed: crossed.length > 0 ? crossed : "none",
      ...(saturated ? { machine: saturated } : {}),
    };
    const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
    const line =
      `${name}: read model full in ${(convergedMs / 1_000).toFixed(1)} s; ` +
      `lag p50 ${lag.summary.p50_ms} / p99 ${lag.summary.p99_ms} / max ${lag.summary.max_ms} ms; ` +
      `reads p99 paged ${readSummaries.paged.p99_ms} ms, single ${readSummaries.single.p99_ms} ms; ` +
      `${json.hosts_did.events_per_second} events/s + ${counts.digests} digests, ${counts.announceJobs} re-announcements; ` +
      `stream ${json.stream_appends_per_second} appends/s, projector ${json.projector_entries_per_second} entries/s` +
      `${lag.unapplied > 0 ? ` (${lag.unapplied} of ${lag.markers} markers never applied)` : ""}; ` +
      `stream ${stream.length_at_end} entries (${mib(stream.bytes_at_end)}); Redis ${mib(memoryAfter)} ` +
      `(rest ${mib(growthPerHour)}/h), ${clients} clients; CPU % of a core: replicas ${cpu.replicas.join("/")}, ` +
      `hosts ${cpu.simulated_hosts}, redis ${cpu.redis}, postgres ${cpu.postgres_backends}; ` +
      `machine ${cpu.machine_busy_percent} % busy; ` +
      `load ${loadAtStart[0]!.toFixed(2)} → ${loadAtEnd[0]!.toFixed(2)}; ` +
      `crossed: ${crossed.length > 0 ? crossed.map((crossing) => crossing.quantity).join(", ") : "none"}` +
      `${saturated ? ` (machine saturated, ${cpu.machine_busy_percent} % busy)` : ""}`;
    return { json, line, figures: caseFigures };
  } finally {
    for (const sim of sims) sim.kill("SIGKILL");
    await Promise.all(replicas.map((replica) => stopChild(replica.child)));
    await db?.destroy();
    await closeRedis(redis);
    await redisServer.stop(2_000);
    await database?.drop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** One API replica as api/main.ts runs it, its log in the case's directory. */
async function startReplica(
  index: number,
  dataDir: string,
  redisUrl: string,
  target: { url?: string; file: string },
): Promise<Replica> {
  const port = await freePort();
  const replicaDir = path.join(dataDir, `api-${index}`);
  mkdirSync(replicaDir, { recursive: true });
  const output = openSync(path.join(replicaDir, "api.log"), "a");
  const child = spawn(
    process.execPath,
    ["--import", "tsx", fileURLToPath(new URL("../api/main.ts", import.meta.url))],
    {
      env: {
        PATH: process.env.PATH,
        HOME: process.env.HOME,
        DATA_DIR: replicaDir,
        ...(target.url ? { DATABASE_URL: target.url } : { DATABASE_PATH: target.file }),
        REDIS_URL: redisUrl,
        REDIS_PREFIX: PREFIX,
        PORT: String(port),
        HOST: "127.0.0.1",
        API_KEYS: API_KEY,
        API_REPLICA_ID: `replica-${index}`,
        LOG_LEVEL: "warn",
        WEBHOOK_SECRET_KEY,
        FLEET_SECRET,
        ANNOUNCE_INTERVAL_MS: String(ANNOUNCE_INTERVAL_MS),
      },
      stdio: ["ignore", output, output],
    },
  );
  return { child, baseUrl: `http://127.0.0.1:${port}` };
}

/** What the replicas logged at warn or above, by message, with a count (their logs go with the case's directory). */
function replicaWarnings(dataDir: string): Record<string, number> {
  const counts: Record<string, number> = {};
  for (let index = 0; index < REPLICAS; index++) {
    const text = readFileSync(path.join(dataDir, `api-${index}`, "api.log"), "utf8");
    for (const line of text.split("\n")) {
      if (!line.startsWith("{")) continue;
      const entry = JSON.parse(line) as { level?: number; msg?: string };
      if ((entry.level ?? 0) >= 40) counts[entry.msg ?? "?"] = (counts[entry.msg ?? "?"] ?? 0) + 1;
    }
  }
  return counts;
}

async function waitHealthy(baseUrl: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const status = await fetch(`${baseUrl}/health`).then(
      (response) => response.status,
      () => 0,
    );
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`${baseUrl} did not answer /health with 200 within a minute`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

function startSims(request: FleetHostsRequest): ChildProcess {
  return fork(fileURLToPath(new URL("./lib/fleet-hosts.ts", import.meta.url)), [JSON.stringify(request)], {
    execArgv: ["--import", "tsx"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
}

/** Sends a step to a simulated-hosts process and waits for its answer. */
function step<Step extends FleetHostsReply["step"]>(
  sim: ChildProcess,
  name: Step,
): Promise<Extract<FleetHostsReply, { step: Step }>> {
  return new Promise((resolve, reject) => {
    const onExit = (code: number | null) => reject(new Error(`a simulated-hosts process exited with ${code}`));
    sim.once("exit", onExit);
    const onMessage = (reply: FleetHostsReply) => {
      if (reply.step !== name) return;
      sim.off("message", onMessage);
      sim.off("exit", onExit);
      resolve(reply as Extract<FleetHostsReply, { step: Step }>);
    };
    sim.on("message", onMessage);
    sim.send(name);
  });
}

/** What the hosts did in the window: the counts at its end less those at its start. */
function minusCounts(after: FleetHostsCounts, before: FleetHostsCounts): FleetHostsCounts {
  return {
    pipelines: after.pipelines - before.pipelines,
    events: after.events - before.events,
    digests: after.digests - before.digests,
    announceJobs: after.announceJobs - before.announceJobs,
    errors: after.errors - before.errors,
    firstError: after.firstError,
  };
}

function sumCounts(replies: Array<{ counts: FleetHostsCounts }>): FleetHostsCounts {
  const total: FleetHostsCounts = { pipelines: 0, events: 0, digests: 0, announceJobs: 0, errors: 0 };
  for (const { counts } of replies) {
    total.pipelines += counts.pipelines;
    total.events += counts.events;
    total.digests += counts.digests;
    total.announceJobs += counts.announceJobs;
    total.errors += counts.errors;
    total.firstError ??= counts.firstError;
  }
  return total;
}

/** Waits until the read model holds `count` live resources; returns whether it did within `timeoutMs`. */
async function waitForRows(db: Db, count: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const live = async (table: "instances" | "snapshots") =>
      Number(
        (
          await db
            .selectFrom(table)
            .select((eb) => eb.fn.countAll().as("n"))
            .where("deleted_at", "is", null)
            .executeTakeFirstOrThrow()
        ).n,
      );
    if ((await live("instances")) + (await live("snapshots")) >= count) return true;
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/**
 * Appends a marker event every MARKER_EVERY_MS and times each until its processed_events row is there; samples the
 * read-model group's undelivered (lag) and unacknowledged (pending) entries as often.
 */
function startLagProbe(redis: Redis, db: Db) {
  const events = new EventStream(redis, PREFIX);
  const marker = sampleInstance({ host_id: "bench-marker" });
  const started = performance.now();
  const waiting = new Map<string, number>();
  const lags: Array<{ at: number; ms: number }> = [];
  let version = 0;
  let groupLagMax = 0;
  let groupPendingMax = 0;
  /** The group's entries-read at the first and the last sample: what the projector took off the stream. */
  let entriesRead: { first?: { at: number; count: number }; last?: { at: number; count: number } } = {};
  const appendTimer = setInterval(async () => {
    const appendedAt = performance.now();
    const { event } = await events.append(
      "instance.updated",
      subjectOf.instance(marker.id),
      { instance: marker },
      { version: ++version },
    );
    waiting.set(event.id, appendedAt);
    const groups = (await redis.xinfo("GROUPS", events.key)) as unknown[][];
    for (const group of groups) {
      const fields = new Map<string, unknown>();
      for (let index = 0; index + 1 < group.length; index += 2) fields.set(String(group[index]), group[index + 1]);
      if (fields.get("name") !== READ_MODEL_GROUP) continue;
      groupLagMax = Math.max(groupLagMax, Number(fields.get("lag") ?? 0));
      groupPendingMax = Math.max(groupPendingMax, Number(fields.get("pending") ?? 0));
      const sample = { at: performance.now(), count: Number(fields.get("entries-read") ?? 0) };
      entriesRead = { first: entriesRead.first ?? sample, last: sample };
    }
  }, MARKER_EVERY_MS);
  let polling = false;
  const pollTimer = setInterval(async () => {
    if (polling || waiting.size === 0) return;
    polling = true;
    try {
      const rows = await db
        .selectFrom("processed_events")
        .select("event_id")
        .where("event_id", "in", [...waiting.keys()])
        .execute();
      const now = performance.now();
      for (const { event_id } of rows) {
        const appendedAt = waiting.get(event_id)!;
        lags.push({ at: appendedAt - started, ms: now - appendedAt });
        waiting.delete(event_id);
      }
    } finally {
      polling = false;
    }
  }, MARKER_POLL_MS);
  return {
    async stop() {
      clearInterval(appendTimer);
      clearInterval(pollTimer);
      const ended = performance.now();
      // Markers still unapplied count with the time they have waited so far: leaving them out would hide a stall.
      const unapplied = [...waiting.values()].map((appendedAt) => ({
        at: appendedAt - started,
        ms: ended - appendedAt,
      }));
      const all = [...lags, ...unapplied].sort((a, b) => a.at - b.at);
      const span = ended - started;
      const mean = (list: typeof all) => (list.length ? list.reduce((sum, lag) => sum + lag.ms, 0) / list.length : 0);
      return {
        summary: summarize(all.map((lag) => lag.ms)),
        firstThirdMean: mean(all.filter((lag) => lag.at < span / 3)),
        lastThirdMean: mean(all.filter((lag) => lag.at >= (2 * span) / 3)),
        unapplied: unapplied.length,
        markers: all.length,
        projectorEntriesPerSecond:
          entriesRead.first && entriesRead.last && entriesRead.last.at > entriesRead.first.at
            ? ((entriesRead.last.count - entriesRead.first.count) * 1_000) /
              (entriesRead.last.at - entriesRead.first.at)
            : 0,
        groupLagMax,
        groupPendingMax,
      };
    },
  };
}

/** The processes whose CPU a case reports. */
async function measuredPids(
  redis: Redis,
  db: Db,
  replicas: Replica[],
  sims: ChildProcess[],
  database: BenchDatabase | undefined,
) {
  const backends = database
    ? (
        await sql<{ pid: number }>`select pid from pg_stat_activity where datname = current_database()`.execute(db)
      ).rows.map((row) => Number(row.pid))
    : [];
  return {
    replicas: replicas.map((replica) => replica.child.pid!),
    sims: sims.map((sim) => sim.pid!),
    redis: [await redisInfo(redis, "server", "process_id")],
    postgres: backends,
  };
}

/** utime + stime of each process, in clock ticks (0 for one that is gone or unreadable). */
function cpuTicksOf(pids: Record<string, number[]>): Map<number, number> {
  const ticks = new Map<number, number>();
  for (const pid of Object.values(pids).flat()) {
    try {
      // The fields after the command name (which may hold spaces): state is the first, utime the 12th, stime the 13th.
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      ticks.set(pid, Number(fields[11]) + Number(fields[12]));
    } catch {
      ticks.set(pid, 0);
    }
  }
  return ticks;
}

/** The event stream's bytes in Redis (MEMORY USAGE over every entry). */
async function streamBytes(redis: Redis): Promise<number> {
  return Number(await redis.call("MEMORY", "USAGE", eventStreamKey(PREFIX), "SAMPLES", "0"));
}

/** The machine's CPU time (/proc/stat): busy (all but idle and iowait) and total, in clock ticks. */
function machineTicks(): { busy: number; total: number } {
  const [, ...values] = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/);
  const ticks = values.slice(0, 8).map(Number);
  const total = ticks.reduce((sum, value) => sum + value, 0);
  return { busy: total - ticks[3]! - ticks[4]!, total };
}

async function redisInfo(redis: Redis, section: string, field: string): Promise<number> {
  const text = await redis.info(section);
  // `field:` ends in a colon (`used_memory`) or is a whole prefix (`cmdstat_xadd:calls=`).
  const match = new RegExp(`^${field}${field.endsWith("=") ? "" : ":"}(\\d+)`, "m").exec(text);
  return Number(match?.[1] ?? 0);
}

function round2(value: number): number {
  return Math.round(value * 100) / 100;
}
