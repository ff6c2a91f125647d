// npm run bench:api — read latency of the API at 10,000 snapshots while the projector applies a burst, on SQLite
// and on PostgreSQL, with the event-loop delay (perf_hooks.monitorEventLoopDelay) of the process serving them.
//
// Per dialect: a private redis-server, the API runtime in this process (read model + projector, as api/main.ts
// builds it) behind a real HTTP server; 10,000 snapshots seeded through the projector (events on the stream);
// then GET /snapshots?limit=100, GET /snapshots/{id} and GET /snapshots?tags[batch]=<b> (100 matches), round-robin
// at --rate requests/s for --seconds while --burst progress events are appended to the stream as fast as Redis
// takes them. PostgreSQL: a throw-away database on BENCH_POSTGRES_URL (default the machine's 127.0.0.1:5432).
// Options: --snapshots <n> (10000), --rate <per second> (200), --seconds <n> (20), --burst <n> (5000).

import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { type ServerType, serve } from "@hono/node-server";
import pg from "pg";
import type { DialectName } from "../api/db/dialect.ts";
import { type ApiRuntime, startApiRuntime } from "../api/runtime.ts";
import { parseConfig } from "../shared/config.ts";
import { EventStream } from "../shared/events/stream.ts";
import { createLogger } from "../shared/logger.ts";
import { closeRedis, connectRedis } from "../shared/redis.ts";
import type { Snapshot } from "../shared/schemas/snapshot.ts";
import { findRedisServer, freePort, REDIS_INSTALL_HINT, startEmbeddedRedis } from "../supervisor/embedded-redis.ts";
import { sampleInstance, sampleSnapshot } from "../test/helpers/resources.ts";

const { values: flags } = parseArgs({
  options: {
    snapshots: { type: "string", default: "10000" },
    rate: { type: "string", default: "200" },
    seconds: { type: "string", default: "20" },
    burst: { type: "string", default: "5000" },
  },
});
const SNAPSHOTS = Number(flags.snapshots);
const RATE = Number(flags.rate);
const SECONDS = Number(flags.seconds);
const BURST = Number(flags.burst);
const API_KEY = "bench-key-0123456789abcdef";
const APPEND_PARALLELISM = 100;
const PER_BATCH_TAG = 100; // snapshots per `batch` tag value: what the filtered read returns
const VERSION_1 = { version: 1 };
const POSTGRES_URL = process.env.BENCH_POSTGRES_URL || "postgres://postgres@127.0.0.1:5432/postgres";

type Route = "paged" | "single" | "filtered";
const ROUTES: Route[] = ["paged", "single", "filtered"];

const log = createLogger("bench-api", "warn");
const results: Record<string, unknown> = {};
for (const dialect of ["sqlite", "postgres"] as DialectName[]) {
  const database = dialect === "postgres" ? await createBenchDatabase() : undefined;
  if (dialect === "postgres" && !database) {
    results[dialect] = `skipped: nothing answers at ${POSTGRES_URL} (set BENCH_POSTGRES_URL)`;
    continue;
  }
  try {
    results[dialect] = await runDialect(dialect, database?.url);
  } finally {
    await database?.drop();
  }
}
console.log(
  JSON.stringify(
    {
      machine: `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, load average ${loadavg()[0]!.toFixed(1)} at the end`,
      snapshots: SNAPSHOTS,
      rate_per_second: RATE,
      seconds: SECONDS,
      burst_events: BURST,
      ...results,
    },
    null,
    2,
  ),
);

async function runDialect(dialect: DialectName, databaseUrl: string | undefined) {
  const dataDir = mkdtempSync(path.join(tmpdir(), `snapfleet-bench-api-${dialect}-`));
  const binary = findRedisServer();
  if (!binary) throw new Error(REDIS_INSTALL_HINT);
  const redisServer = await startEmbeddedRedis(binary, dataDir, log);
  const config = parseConfig({
    DATA_DIR: dataDir,
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisServer.url,
    REDIS_PREFIX: "bench",
    LOG_LEVEL: "warn",
    WEBHOOK_SECRET_KEY: randomBytes(32).toString("base64"),
  });
  const runtime = await startApiRuntime(config, log, {
    apiKeys: [API_KEY],
    redisReadyWaitMs: 5_000,
    projector: true,
    webhookPipeline: false,
    maintenance: false,
    schedules: false,
  });
  const port = await freePort();
  const server = serve({ fetch: runtime.app.fetch, port, hostname: "127.0.0.1" });
  const baseUrl = `http://127.0.0.1:${port}`;
  const writer = connectRedis(redisServer.url, "worker", 5_000);
  const events = new EventStream(writer, "bench");
  try {
    await runtime.deps.projector.ready;
    const seedStart = performance.now();
    const snapshots = await seed(events, runtime);
    const seedMs = performance.now() - seedStart;

    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const burst = appendBurst(events, snapshots, runtime);
    const { latencies, failures } = await drive(baseUrl, snapshots);
    const burstResult = await burst;
    loop.disable();
    return {
      seed_ms: Math.round(seedMs),
      routes: Object.fromEntries(
        ROUTES.map((route) => [route, { ...summarize(latencies[route]), failed: failures[route] }]),
      ),
      event_loop_delay_ms: { p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max) },
      burst: burstResult,
    };
  } finally {
    await closeRedis(writer);
    await new Promise<void>((resolve) => closeServer(server, resolve));
    await runtime.stop();
    await redisServer.stop(2_000);
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** Appends SNAPSHOTS snapshot.created events and waits until the projector has applied them all. */
async function seed(events: EventStream, runtime: ApiRuntime): Promise<Snapshot[]> {
  const instance = sampleInstance();
  const start = Date.parse("2026-01-01T00:00:00.000Z");
  const snapshots = Array.from({ length: SNAPSHOTS }, (_, index) =>
    sampleSnapshot(instance, {
      created_at: new Date(start + index * 1_000).toISOString(),
      name: `s-${index}`,
      tags: { team: `team-${index % 10}`, batch: `b${Math.floor(index / PER_BATCH_TAG)}` },
    }),
  );
  await appendAll(snapshots.length, (index) =>
    events.append("snapshot.created", `snapshot:${snapshots[index]!.id}`, { snapshot: snapshots[index]! }, VERSION_1),
  );
  await waitForProcessed(runtime, SNAPSHOTS, 600_000);
  return snapshots;
}

/** The projector burst: progress events for seeded snapshots, appended as fast as Redis takes them. */
async function appendBurst(events: EventStream, snapshots: Snapshot[], runtime: ApiRuntime) {
  const start = performance.now();
  await appendAll(BURST, (index) => {
    const snapshot = { ...snapshots[index % snapshots.length]!, compression_state: "compressing" as const };
    return events.append(
      "snapshot.compression.progress",
      `snapshot:${snapshot.id}`,
      { snapshot, bytes_done: index, bytes_total: BURST },
      { version: 2 + index }, // each a newer version of its snapshot: every one is applied
    );
  });
  await waitForProcessed(runtime, SNAPSHOTS + BURST, 600_000);
  const appliedMs = performance.now() - start;
  return { events: BURST, applied_ms: Math.round(appliedMs), events_per_second: Math.round((BURST * 1e3) / appliedMs) };
}

/** Open-loop load: one request every 1/RATE s, routes round-robin, each timed to its full body. */
async function drive(baseUrl: string, snapshots: Snapshot[]) {
  const latencies: Record<Route, number[]> = { paged: [], single: [], filtered: [] };
  const failures: Record<Route, number> = { paged: 0, single: 0, filtered: 0 };
  const total = RATE * SECONDS;
  const start = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let index = 0; index < total; index++) {
    const wait = start + (index * 1_000) / RATE - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const route = ROUTES[index % ROUTES.length]!;
    const snapshot = snapshots[(index * 7919) % snapshots.length]!;
    const url =
      route === "paged"
        ? `/snapshots?limit=100`
        : route === "single"
          ? `/snapshots/${snapshot.id}`
          : `/snapshots?tags[batch]=${snapshot.tags.batch}`;
    inFlight.push(
      (async () => {
        const before = performance.now();
        try {
          const response = await fetch(`${baseUrl}${url}`, { headers: { authorization: `Bearer ${API_KEY}` } });
          await response.arrayBuffer();
          if (response.status === 200) return void latencies[route].push(performance.now() - before);
        } catch {}
        failures[route]++; // an overloaded server resets connections: counted, not timed
      })(),
    );
  }
  await Promise.all(inFlight);
  return { latencies, failures };
}

async function appendAll(count: number, append: (index: number) => Promise<unknown>): Promise<void> {
  for (let done = 0; done < count; done += APPEND_PARALLELISM) {
    await Promise.all(Array.from({ length: Math.min(APPEND_PARALLELISM, count - done) }, (_, i) => append(done + i)));
  }
}

async function waitForProcessed(runtime: ApiRuntime, count: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const row = await runtime.deps.db
      .selectFrom("processed_events")
      .select((eb) => eb.fn.countAll().as("n"))
      .executeTakeFirstOrThrow();
    if (Number(row.n) >= count) return;
    if (Date.now() > deadline) throw new Error(`the projector applied ${row.n} of ${count} events in time`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function createBenchDatabase(): Promise<{ url: string; drop: () => Promise<void> } | undefined> {
  const name = `snapfleet_bench_${randomBytes(4).toString("hex")}`;
  const admin = async (statement: string) => {
    const client = new pg.Client({ connectionString: POSTGRES_URL, connectionTimeoutMillis: 2_000 });
    await client.connect();
    try {
      await client.query(statement);
    } finally {
      await client.end();
    }
  };
  try {
    await admin(`create database ${name}`);
  } catch {
    return undefined;
  }
  const url = new URL(POSTGRES_URL);
  url.pathname = `/${name}`;
  return { url: url.toString(), drop: () => admin(`drop database if exists ${name} with (force)`) };
}

function summarize(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => round(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0);
  return { requests: sorted.length, p50_ms: at(0.5), p99_ms: at(0.99), max_ms: round(sorted.at(-1) ?? 0) };
}

function closeServer(server: ServerType, done: () => void) {
  server.close(() => done());
  (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function ms(nanoseconds: number): number {
  return round(nanoseconds / 1e6);
}
