// Wakes live event streams when the durable stream grows: one blocking tail shared by every SSE client,
// each client then reads from its own position, so the tail can never cause a gap or a duplicate.
import type { Redis } from "ioredis";
import { eventStreamKey } from "../../shared/events/stream.ts";
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
  private readonly closing = new AbortController();
  private tail?: { redis: Redis; loop: Promise<void> };

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

  async close(): Promise<void> {
    this.closing.abort();
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
        const reply = await redis.xread("COUNT", 1_000, "BLOCK", TAIL_BLOCK_MS, "STREAMS", key, lastId);
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length === 0) continue;
        lastId = entries.at(-1)![0];
        this.generation++;
        for (const wake of [...this.waiters]) wake();
      } catch (error) {
        if (this.closing.signal.aborted) break;
        this.options.log.warn({ err: (error as Error).message }, "event feed tail failed; retrying");
        await new Promise((resolve) => setTimeout(resolve, TAIL_RETRY_MS));
      }
    }
  }
}
