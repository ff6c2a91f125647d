// npm run bench:webhooks — webhook delivery throughput to one fast loopback receiver, and the latency from an
// event's append to the durable stream until the receiver has it.
//
// Runs the real processes (api/main.ts with its dispatcher, workers/webhooks/main.ts) on a private redis-server
// and a temp data dir; this process appends events (full snapshot resources) and hosts the receiver.
// Options: --events <n> throughput burst (default 3000), --latency-events <n> (default 1000) appended at
// --rate <per second> (default 100), --concurrency <n> WEBHOOK_CONCURRENCY (default 50).
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import { EventStream } from "../shared/events/stream.ts";
import { createLogger } from "../shared/logger.ts";
import { closeRedis, connectRedis, waitForRedisReady } from "../shared/redis.ts";
import { findRedisServer, freePort, REDIS_INSTALL_HINT, startEmbeddedRedis } from "../supervisor/embedded-redis.ts";
import { sampleInstance, sampleSnapshot } from "../test/helpers/resources.ts";
import { startWebhookReceiver, verifyReceived } from "../test/helpers/webhook-receiver.ts";

const { values: flags } = parseArgs({
  options: {
    events: { type: "string", default: "3000" },
    "latency-events": { type: "string", default: "1000" },
    rate: { type: "string", default: "100" },
    concurrency: { type: "string", default: "50" },
  },
});
const BURST = Number(flags.events);
const LATENCY_EVENTS = Number(flags["latency-events"]);
const RATE = Number(flags.rate);
const API_KEY = "bench-key-0123456789abcdef";
const APPEND_PARALLELISM = 50;

const dataDir = mkdtempSync(path.join(tmpdir(), "snapfleet-bench-webhooks-"));
const binary = findRedisServer();
if (!binary) throw new Error(REDIS_INSTALL_HINT);
const redisServer = await startEmbeddedRedis(binary, dataDir, createLogger("bench-redis", "warn"));
const port = await freePort();
const env = {
  ...process.env,
  REDIS_URL: redisServer.url,
  REDIS_PREFIX: "bench",
  DATA_DIR: dataDir,
  PORT: String(port),
  HOST: "127.0.0.1",
  API_KEYS: API_KEY,
  LOG_LEVEL: "warn",
  WEBHOOK_ALLOWED_HOSTS: "127.0.0.1",
  WEBHOOK_CONCURRENCY: flags.concurrency,
};
const children: ChildProcess[] = ["api/main.ts", "workers/webhooks/main.ts"].map((entry) =>
  spawn(process.execPath, ["--import", "tsx", entry], { env, stdio: ["ignore", "inherit", "inherit"] }),
);
const baseUrl = `http://127.0.0.1:${port}`;

// One seen-set for the whole run: an id delivered again in a later phase is a duplicate too. `received` holds the
// current phase's first arrivals (webhook-id → receive time) and is cleared between phases; `seen` never is.
const seen = new Set<string>();
const received = new Map<string, number>();
let duplicates = 0;
const receiver = await startWebhookReceiver((request) => {
  const id = String(request.headers["webhook-id"]);
  if (seen.has(id)) duplicates++;
  else {
    seen.add(id);
    received.set(id, performance.now());
  }
  return { status: 204 };
});

const redis = connectRedis(redisServer.url, "worker", 5_000);
await waitForRedisReady(redis, 5_000);
const events = new EventStream(redis, "bench");

try {
  await waitUntil(async () => (await fetch(`${baseUrl}/health`).catch(() => undefined))?.status === 200, 30_000);
  const created = await fetch(`${baseUrl}/webhooks`, {
    method: "POST",
    headers: { authorization: `Bearer ${API_KEY}`, "content-type": "application/json" },
    body: JSON.stringify({ url: receiver.url, event_types: ["snapshot.compression.progress"], description: "bench" }),
  });
  if (created.status !== 201) throw new Error(`POST /webhooks answered ${created.status}: ${await created.text()}`);
  const { secret } = (await created.json()) as { secret: string };

  const instance = sampleInstance();
  const snapshot = { ...sampleSnapshot(instance), compression_state: "compressing" as const };
  const appendOne = () =>
    events.append(
      "snapshot.compression.progress",
      `snapshot:${snapshot.id}`,
      { snapshot, bytes_done: 134_217_728, bytes_total: 268_435_456 },
      { version: 1 },
    );
  const bodyBytes = JSON.stringify({ type: "x", timestamp: "x", data: (await appendOne()).event.data }).length;
  await waitUntil(() => received.size === 1, 30_000); // warm: dispatcher, queue, worker, connections

  // Throughput: a burst appended as fast as Redis takes it, until the receiver has every event.
  received.clear();
  const burstStart = performance.now();
  for (let done = 0; done < BURST; done += APPEND_PARALLELISM) {
    await Promise.all(Array.from({ length: Math.min(APPEND_PARALLELISM, BURST - done) }, appendOne));
  }
  const appendedIn = performance.now() - burstStart;
  await waitUntil(() => received.size >= BURST, 300_000);
  const burstMs = Math.max(...received.values()) - burstStart;

  // Latency: a steady rate, each event timed from just before its append until the receiver has it.
  received.clear();
  const appendedAt = new Map<string, number>();
  const latencyStart = performance.now();
  for (let index = 0; index < LATENCY_EVENTS; index++) {
    const due = latencyStart + (index * 1_000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const before = performance.now();
    appendOne().then(({ event }) => appendedAt.set(event.id, before));
  }
  await waitUntil(() => received.size >= LATENCY_EVENTS && appendedAt.size >= LATENCY_EVENTS, 120_000);
  const latencies = [...appendedAt].map(([id, before]) => received.get(id)! - before).sort((a, b) => a - b);

  // Spot-check that what arrived verifies with the endpoint's secret.
  const sample = receiver.requests.at(-1)!;
  verifyReceived(sample, secret);

  const result = {
    machine: `${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, load average ${loadavg()[0]!.toFixed(1)} at the end`,
    body_bytes: bodyBytes,
    worker_concurrency: Number(flags.concurrency),
    throughput: {
      events: BURST,
      append_ms: Math.round(appendedIn),
      delivered_ms: Math.round(burstMs),
      events_per_second: Math.round((BURST * 1_000) / burstMs),
    },
    latency: {
      events: LATENCY_EVENTS,
      rate_per_second: RATE,
      p50_ms: round(percentile(latencies, 0.5)),
      p95_ms: round(percentile(latencies, 0.95)),
      p99_ms: round(percentile(latencies, 0.99)),
      max_ms: round(latencies.at(-1)!),
    },
    duplicates,
  };
  console.log(JSON.stringify(result, null, 2));
} finally {
  for (const child of children) child.kill("SIGTERM");
  await Promise.all(children.map((child) => new Promise((resolve) => child.once("exit", resolve))));
  await receiver.close();
  await closeRedis(redis);
  await redisServer.stop(5_000);
  rmSync(dataDir, { recursive: true, force: true });
}

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * fraction))]!;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}

async function waitUntil(probe: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error("benchmark timed out");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
