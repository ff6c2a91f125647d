// Child process of bench/api.ts: the clients. It drives the open-loop reads over HTTP and appends the projector
// burst to the event stream, so that neither costs the serving process's event loop anything (as with real clients
// and real workers). Started with one JSON argument (LoadRequest); waits for the parent's "go" over IPC, answers
// with one LoadResult message and exits.
import { pathToFileURL } from "node:url";
import { EventStream } from "../../shared/events/stream.ts";
import { closeRedis, connectRedis } from "../../shared/redis.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";

export type Route = "paged" | "single" | "filtered";
export const ROUTES: Route[] = ["paged", "single", "filtered"];
const APPEND_PARALLELISM = 100;

export interface LoadRequest {
  baseUrl: string;
  apiKey: string;
  redisUrl: string;
  redisPrefix: string;
  rate: number;
  seconds: number;
  burst: number;
}

/** One timed request: when it was sent (ms after the load began) and how long it took to its last body byte. */
export interface Sample {
  at: number;
  ms: number;
}

export interface LoadResult {
  latencies: Record<Route, Sample[]>;
  failures: Record<Route, number>;
  burstAppendedMs: number;
}

export interface LoadGo {
  snapshots: Array<Pick<Snapshot, "id" | "tags">>;
  /** The seeded snapshots the burst's progress events are about (all of them, cycled). */
  burstSnapshots: Snapshot[];
}

// Run as the child (bench/api.ts imports this module for its types and helpers too).
const [, entry, requestJson] = process.argv;
if (entry && requestJson && import.meta.url === pathToFileURL(entry).href) {
  const request = JSON.parse(requestJson) as LoadRequest;
  process.once("message", (go: LoadGo) => {
    run(request, go).then(
      (result) => process.send?.(result, () => process.exit(0)),
      (error) => {
        console.error(error);
        process.exit(1);
      },
    );
  });
  process.send?.("ready");
}

async function run(request: LoadRequest, go: LoadGo): Promise<LoadResult> {
  const writer = connectRedis(request.redisUrl, "worker", 5_000);
  try {
    const events = new EventStream(writer, request.redisPrefix);
    const burst = appendBurst(events, go.burstSnapshots, request.burst);
    const { latencies, failures } = await drive(request, go.snapshots);
    return { latencies, failures, burstAppendedMs: await burst };
  } finally {
    await closeRedis(writer);
  }
}

/** Progress events for seeded snapshots, appended as fast as Redis takes them; resolves with the time it took. */
async function appendBurst(events: EventStream, snapshots: Snapshot[], count: number): Promise<number> {
  const start = performance.now();
  await appendAll(count, (index) => {
    const snapshot = { ...snapshots[index % snapshots.length]!, compression_state: "compressing" as const };
    return events.append(
      "snapshot.compression.progress",
      `snapshot:${snapshot.id}`,
      { snapshot, bytes_done: index, bytes_total: count },
      { version: 2 + index }, // each a newer version of its snapshot: every one is applied
    );
  });
  return performance.now() - start;
}

/** Appends `count` entries, APPEND_PARALLELISM at a time. */
export async function appendAll(count: number, append: (index: number) => Promise<unknown>): Promise<void> {
  for (let done = 0; done < count; done += APPEND_PARALLELISM) {
    await Promise.all(Array.from({ length: Math.min(APPEND_PARALLELISM, count - done) }, (_, i) => append(done + i)));
  }
}

/** Open-loop load: one request every 1/rate s, routes round-robin, each timed to its full body. */
async function drive(request: LoadRequest, snapshots: LoadGo["snapshots"]) {
  const latencies: Record<Route, Sample[]> = { paged: [], single: [], filtered: [] };
  const failures: Record<Route, number> = { paged: 0, single: 0, filtered: 0 };
  const total = request.rate * request.seconds;
  const start = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let index = 0; index < total; index++) {
    const wait = start + (index * 1_000) / request.rate - performance.now();
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
          const response = await fetch(`${request.baseUrl}${url}`, {
            headers: { authorization: `Bearer ${request.apiKey}` },
          });
          await response.arrayBuffer();
          if (response.status === 200) {
            return void latencies[route].push({ at: before - start, ms: performance.now() - before });
          }
        } catch {}
        failures[route]++; // an overloaded server resets connections: counted, not timed
      })(),
    );
  }
  await Promise.all(inFlight);
  return { latencies, failures };
}
