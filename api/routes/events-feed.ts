// Wakes live event streams when the durable stream grows: one blocking tail shared by every SSE client,
// each client then reads from its own position, so the tail can never cause a gap or a duplicate. The same tail tells
// in-process subscribers (GET …/wait) of every entry, whichever replica's projector applies it.
import type { Redis } from "ioredis";
import { decodeEntry, eventStreamKey, type StreamEntry } from "../../shared/events/stream.ts";
import type { Logger } from "../../shared/logger.ts";
import { connectRedis } from "../../shared/redis.ts";

export interface EventFeedOptions {
  redisUrl: string;
  prefix: string;
  commandTimeoutMs: number;
  /** A comment line goes to idle clients this often, so proxies and clients know the stream is alive. */
  heartbeatMs: number;
  log: Logger;
}

const TAIL_BLOCK_MS = 5_000;
const TAIL_RETRY_MS = 500;

export class EventFeed {
  private generation = 0;
  private readonly waiters = new Set<() => void>();
  private readonly entryListeners = new Set<(entry: StreamEntry) => void>();
  private readonly closing = new AbortController();
  private tail?: { redis: Redis; loop: Promise<void> };
  private markTailing!: () => void;
  /** Resolves once the tail has its starting position: every entry appended after that reaches `onEntry`. */
  readonly tailing = new Promise<void>((resolve) => {
    this.markTailing = resolve;
  });

  constructor(readonly options: EventFeedOptions) {}

  /** Aborted when the API shuts down: every live stream ends then. */
  get signal(): AbortSignal {
    return this.closing.signal;
  }

  /** Bumped whenever the stream grows; take it before reading, pass it to `waitForChange`. */
  get version(): number {
    this.startTail();
    return this.generation;
  }

  /** True as soon as the stream has grown past `version`; false after `ms` or when `signal` aborts. */
  waitForChange(version: number, ms: number, signal: AbortSignal): Promise<boolean> {
    if (this.generation !== version) return Promise.resolve(true);
    if (signal.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (changed: boolean) => {
        clearTimeout(timer);
        this.waiters.delete(wake);
        signal.removeEventListener("abort", onAbort);
        resolve(changed);
      };
      const wake = () => finish(true);
      const onAbort = () => finish(false);
      const timer = setTimeout(() => finish(false), ms);
      this.waiters.add(wake);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Calls `listener` with each entry appended to the stream from now on, by any host or replica. */
  onEntry(listener: (entry: StreamEntry) => void): () => void {
    this.startTail();
    this.entryListeners.add(listener);
    return () => this.entryListeners.delete(listener);
  }

  async close(): Promise<void> {
    this.closing.abort();
    this.markTailing(); // nothing more will come
    if (!this.tail) return;
    this.tail.redis.disconnect(); // interrupts the blocking read
    await this.tail.loop;
  }

  private startTail(): void {
    if (this.tail || this.closing.signal.aborted) return;
    const redis = connectRedis(this.options.redisUrl, "worker", this.options.commandTimeoutMs);
    redis.on("error", () => {}); // the loop logs what matters
    this.tail = { redis, loop: this.follow(redis) };
  }

  private async follow(redis: Redis): Promise<void> {
    const key = eventStreamKey(this.options.prefix);
    let lastId: string | undefined;
    while (!this.closing.signal.aborted) {
      try {
        lastId ??= (await redis.xrevrange(key, "+", "-", "COUNT", 1))[0]?.[0] ?? "0-0";
        this.markTailing();
        const reply = await redis.xread("COUNT", 1_000, "BLOCK", TAIL_BLOCK_MS, "STREAMS", key, lastId);
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length === 0) continue;
        lastId = entries.at(-1)![0];
        this.generation++;
        for (const wake of [...this.waiters]) wake();
        if (this.entryListeners.size > 0) this.tellListeners(entries);
      } catch (error) {
        if (this.closing.signal.aborted) break;
        this.options.log.warn({ err: (error as Error).message }, "event feed tail failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, TAIL_RETRY_MS));
      }
    }
  }

  /** Entries that do not fit the catalog are skipped here: the projector logs them. */
  private tellListeners(entries: Array<[string, string[]]>): void {
    for (const [, fields] of entries) {
      let entry: StreamEntry;
      try {
        entry = decodeEntry(fields);
      } catch {
        continue;
      }
      for (const listener of [...this.entryListeners]) listener(entry);
    }
  }
}
