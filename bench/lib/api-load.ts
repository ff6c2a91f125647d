// Child processes of bench/api.ts and bench/fleet.ts: the clients, so that neither costs the serving process's event loop anything (as
// with real clients and real workers). One child drives the open-loop reads over HTTP, another appends the projector
// burst to the event stream (apart, so the appends do not delay the reader's own timing). Started with one JSON
// argument (LoadRequest); takes the seeded snapshots, then the parent's "go", over IPC; answers with one LoadResult
// message and exits.
import { fork } from "node:child_process";
import http from "node:http";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Redis } from "ioredis";
import { EventStream } from "../../shared/events/stream.ts";
import { closeRedis, redisOptions } from "../../shared/redis.ts";
import type { Snapshot } from "../../shared/schemas/snapshot.ts";

export type Route = "paged" | "single" | "filtered";
export const ROUTES: Route[] = ["paged", "single", "filtered"];
const APPEND_PARALLELISM = 100;

export interface LoadRequest {
  role: "reads" | "burst";
  baseUrl: string;
  apiKey: string;
  redisUrl: string;
  redisPrefix: string;
  rate: number;
  seconds: number;
  burst: number;
  /**
   * The bare server (bench/lib/bare-server.ts): each read goes to it too, at the same moment as to the API, so both
   * are timed under the same load (the burst included) and their percentiles compare.
   */
  bareUrl?: string;
  /** A request not answered 200 within this is failed; a failed request counts in the percentiles as this value. */
  timeoutMs: number;
  /** The routes the reads go round (default ROUTES). */
  routes?: Route[];
  /** More servers (replicas behind a balancer) the reads go round with `baseUrl`, one request each in turn. */
  moreBaseUrls?: string[];
  /** Pages of the list the paged reads walk at most (default: every page). */
  maxPages?: number;
}

/**
 * One timed request: when it was sent (ms after the load began) and how long it took to its last body byte. A failed
 * one (reset, error status, timeout) counts as `timeoutMs`: leaving it out would make an overloaded server look fast.
 */
export interface Sample {
  at: number;
  ms: number;
  failed?: true;
}

export interface LoadResult {
  latencies: Record<Route, Sample[]>;
  failures: Record<Route, number>;
  /** Pages of `GET /snapshots?limit=100` the paged reads walk through, following `x-next-cursor`. */
  pages: number;
  /** Paged reads whose `x-next-cursor` was not the one the walk before the load saw for that page. */
  cursorMismatches: number;
  burstAppendedMs: number;
  /** The bare server's figures for the same reads, when the load had one. */
  bare?: { latencies: Record<Route, Sample[]>; failures: Record<Route, number> };
  /** The client's own event-loop delay (ms) over the load: a busy client delays its own timing. */
  clientLoopDelayMs?: { p99: number; max: number };
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
  // First the seeded snapshots (a large message: its cost falls before the measured phase), then "go".
  process.once("message", (go: LoadGo) => {
    process.once("message", () =>
      run(request, go).then(
        (result) => process.send?.(result, () => process.exit(0)),
        (error) => {
          console.error(error);
          process.exit(1);
        },
      ),
    );
    // The page chain first (each page's cursor, as a client walking the list gets them), then a long-running API is
    // warm: a few requests of each route (JIT, connections), not timed.
    const warmUp =
      request.role === "reads"
        ? walkPages(request).then(async (chain) => {
            pageChain = chain;
            await drive({ ...request, seconds: 1 }, go.snapshots);
          })
        : Promise.resolve();
    void warmUp.then(
      () => process.send?.("prepared"),
      (error) => {
        console.error(error);
        process.exit(1);
      },
    );
  });
}

/** Starts a clients' process (this module) and hands it `prepare`; `go` starts the load. */
export async function startLoad(request: LoadRequest, prepare: LoadGo) {
  const child = fork(fileURLToPath(import.meta.url), [JSON.stringify(request)], {
    // A larger young generation: fewer scavenges in the client, whose pauses would count as the server's latency.
    execArgv: ["--import", "tsx", "--max-semi-space-size=64"],
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const exited = new Promise<never>((_, reject) =>
    child.once("exit", (code) => reject(new Error(`the load process exited with ${code} before its result`))),
  );
  const nextMessage = <T>() => Promise.race([new Promise<T>((resolve) => child.once("message", resolve)), exited]);
  const prepared = nextMessage<string>();
  child.send(prepare);
  await prepared;
  return {
    /** Starts the load; resolves with the clients' figures. */
    go(): Promise<LoadResult> {
      const result = nextMessage<LoadResult>();
      child.send("go");
      return result;
    },
  };
}

/** The cursor of each page of `GET /snapshots?limit=100` (undefined: page 1), walked by following `x-next-cursor`. */
let pageChain: Array<string | undefined> = [undefined];
/** The walk stopped at `maxPages` with pages left: the last page's cursor is not known. */
let pageChainCut = false;

export const pagedPath = (cursor: string | undefined) =>
  `/snapshots?limit=100${cursor === undefined ? "" : `&cursor=${encodeURIComponent(cursor)}`}`;

async function walkPages(request: LoadRequest): Promise<Array<string | undefined>> {
  const chain: Array<string | undefined> = [undefined];
  for (;;) {
    const { status, nextCursor } = await get(`${request.baseUrl}${pagedPath(chain.at(-1))}`, request);
    if (status !== 200) throw new Error(`walking the pages: GET ${pagedPath(chain.at(-1))} answered ${status}`);
    if (!nextCursor) return chain;
    if (chain.length >= (request.maxPages ?? Number.POSITIVE_INFINITY)) {
      pageChainCut = true;
      return chain;
    }
    chain.push(nextCursor);
  }
}

async function run(request: LoadRequest, go: LoadGo): Promise<LoadResult> {
  if (request.role === "reads") {
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    const result = await drive(request, go.snapshots);
    loop.disable();
    const clientLoopDelayMs = { p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 };
    return { ...result, pages: pageChain.length, burstAppendedMs: 0, clientLoopDelayMs };
  }
  // Auto-pipelined: the burst lands on the stream in few round trips and costs this machine's CPU little time.
  const writer = new Redis(request.redisUrl, { ...redisOptions("worker", 5_000), enableAutoPipelining: true });
  try {
    const burstAppendedMs = await appendBurst(
      new EventStream(writer, request.redisPrefix),
      go.burstSnapshots,
      request.burst,
    );
    return {
      latencies: { paged: [], single: [], filtered: [] },
      failures: { paged: 0, single: 0, filtered: 0 },
      pages: 0,
      cursorMismatches: 0,
      burstAppendedMs,
    };
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

/** Keep-alive connections, as a real client pool keeps them; node:http costs the client less than fetch. */
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** A GET read to its last body byte, abandoned after `timeoutMs`; resolves with the status and any next cursor. */
function get(
  url: string,
  { apiKey, timeoutMs }: Pick<LoadRequest, "apiKey" | "timeoutMs">,
): Promise<{ status: number; nextCursor?: string }> {
  return new Promise((resolve, reject) => {
    const request = http.get(url, { agent, headers: { authorization: `Bearer ${apiKey}` } }, (response) => {
      response.on("data", () => {});
      response.on("end", () => {
        clearTimeout(timer);
        const nextCursor = response.headers["x-next-cursor"];
        resolve({
          status: response.statusCode ?? 0,
          nextCursor: typeof nextCursor === "string" ? nextCursor : undefined,
        });
      });
      response.on("error", reject);
    });
    const timer = setTimeout(() => request.destroy(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
    request.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
  });
}

/** Appends `count` entries, APPEND_PARALLELISM at a time. */
export async function appendAll(count: number, append: (index: number) => Promise<unknown>): Promise<void> {
  for (let done = 0; done < count; done += APPEND_PARALLELISM) {
    await Promise.all(Array.from({ length: Math.min(APPEND_PARALLELISM, count - done) }, (_, i) => append(done + i)));
  }
}

/** Open-loop load: one request every 1/rate s, routes round-robin, each timed to its full body. */
async function drive(request: LoadRequest, snapshots: LoadGo["snapshots"]) {
  const ours = newTally();
  const bare = newTally();
  let pagedCount = 0;
  const total = request.rate * request.seconds;
  const routes = request.routes ?? ROUTES;
  const baseUrls = [request.baseUrl, ...(request.moreBaseUrls ?? [])];
  const start = performance.now();
  const inFlight: Promise<void>[] = [];
  for (let index = 0; index < total; index++) {
    const wait = start + (index * 1_000) / request.rate - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    const route = routes[index % routes.length]!;
    const baseUrl = baseUrls[Math.floor(index / routes.length) % baseUrls.length]!;
    const snapshot = snapshots[(index * 7919) % snapshots.length]!;
    // Paged reads walk the list page after page (wrapping at the end), each with the cursor the API issued for it.
    const page = route === "paged" ? pagedCount++ % pageChain.length : 0;
    const url =
      route === "paged"
        ? pagedPath(pageChain[page])
        : route === "single"
          ? `/snapshots/${snapshot.id}`
          : `/snapshots?tags[batch]=${snapshot.tags.batch}`;
    // The cursor of the next page as the walk saw it (null: nothing to check, past a walk cut at maxPages).
    const checked = route === "paged" && (page + 1 < pageChain.length || !pageChainCut);
    const expectedCursor = checked ? pageChain[page + 1] : null;
    // The same request to the bare server at the same moment, when there is one: both see the same load.
    inFlight.push(timedGet(request, baseUrl, url, route, expectedCursor, start, ours));
    if (request.bareUrl) inFlight.push(timedGet(request, request.bareUrl, url, route, expectedCursor, start, bare));
  }
  await Promise.all(inFlight);
  return { ...ours, ...(request.bareUrl ? { bare } : {}) };
}

interface Tally {
  latencies: Record<Route, Sample[]>;
  failures: Record<Route, number>;
  cursorMismatches: number;
}

function newTally(): Tally {
  return {
    latencies: { paged: [], single: [], filtered: [] },
    failures: { paged: 0, single: 0, filtered: 0 },
    cursorMismatches: 0,
  };
}

/** One GET timed to its last body byte, into `tally`; a reset, an error status or a timeout counts as the timeout. */
async function timedGet(
  request: LoadRequest,
  baseUrl: string,
  url: string,
  route: Route,
  expectedCursor: string | undefined | null,
  start: number,
  tally: Tally,
): Promise<void> {
  const before = performance.now();
  try {
    const { status, nextCursor } = await get(`${baseUrl}${url}`, request);
    const ms = performance.now() - before;
    // An answer later than the timeout (its timer fired late on a busy loop) is a timeout too.
    if (status === 200 && ms <= request.timeoutMs) {
      if (expectedCursor !== null && nextCursor !== expectedCursor) tally.cursorMismatches++;
      return void tally.latencies[route].push({ at: before - start, ms });
    }
  } catch {}
  // Reset, error status or timeout: counted, and in the percentiles as the timeout, not left out.
  tally.failures[route]++;
  tally.latencies[route].push({ at: before - start, ms: request.timeoutMs, failed: true });
}
