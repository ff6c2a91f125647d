// Applies the event stream to the read model: a consumer group, one transaction per entry (an event, or a part of a
// host's full-state announcement), idempotent by event id and forward-only by host-owned version, acknowledged after
// commit.
import type { Redis } from "ioredis";
import { decodeEntry, eventStreamKey, type StreamEntry } from "../../shared/events/stream.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Db } from "../db/database.ts";
import { type StreamConsumer, type StreamEntries, startStreamConsumer } from "../stream-consumer.ts";
import { applyAnnouncement, applyEvent } from "./apply.ts";

export const READ_MODEL_GROUP = "read-model";
const CONSUMER = "api";
const BLOCK_MS = 1_000;
const START_RETRY_MS = 1_000;

export interface ProjectorOptions {
  db: Db;
  /** A connection of the worker role (blocking reads); the projector owns and closes nothing else. */
  redis: Redis;
  prefix: string;
  log: Logger;
}

export class Projector {
  private stopped = false;
  private starting?: Promise<void>;
  private consumer?: StreamConsumer;
  private markReady!: () => void;
  /** Resolves once the consumer group exists and the projector is reading. */
  readonly ready = new Promise<void>((resolve) => {
    this.markReady = resolve;
  });
  private readonly waiters = new Map<string, Array<() => void>>();
  private readonly listeners = new Set<(entry: StreamEntry) => void>();

  constructor(private readonly options: ProjectorOptions) {}

  /** Starts following the stream; returns at once, so the API serves (degraded) while Redis is down. */
  start(): void {
    this.starting = this.startConsumer();
  }

  /**
   * Stops after the batch in hand; unacknowledged entries are picked up at the next start. Gives up waiting
   * after a blocking read's length (a read stuck on a Redis that is down ends when its connection closes).
   */
  async stop(): Promise<void> {
    this.stopped = true;
    const stopping = (async () => {
      await this.starting;
      await this.consumer?.stop();
    })();
    await Promise.race([stopping, new Promise((resolve) => setTimeout(resolve, BLOCK_MS + 500).unref())]);
  }

  /** Resolves once the event has been applied (at once if it already was); rejects after `timeoutMs`. */
  async waitFor(eventId: string, timeoutMs: number): Promise<void> {
    if (await this.isApplied(eventId)) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        remove();
        reject(new Error(`event ${eventId} was not projected within ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      const remove = () => {
        const list = this.waiters.get(eventId)?.filter((waiter) => waiter !== done) ?? [];
        if (list.length) this.waiters.set(eventId, list);
        else this.waiters.delete(eventId);
      };
      this.waiters.set(eventId, [...(this.waiters.get(eventId) ?? []), done]);
      // It may have been applied between the check above and registering.
      this.isApplied(eventId).then((applied) => {
        if (!applied) return;
        remove();
        done();
      });
    });
  }

  /** Calls `listener` after each event or announcement is applied (in-process subscribers, e.g. GET …/wait). */
  onApplied(listener: (entry: StreamEntry) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async isApplied(eventId: string): Promise<boolean> {
    const row = await this.options.db
      .selectFrom("processed_events")
      .select("event_id")
      .where("event_id", "=", eventId)
      .executeTakeFirst();
    return row !== undefined;
  }

  private async startConsumer(): Promise<void> {
    while (!this.stopped) {
      try {
        this.consumer = await startStreamConsumer({
          redis: this.options.redis,
          key: eventStreamKey(this.options.prefix),
          group: READ_MODEL_GROUP,
          consumer: CONSUMER,
          startAt: "0",
          handle: (entries) => this.applyBatch(entries),
          log: this.options.log,
          blockMs: BLOCK_MS,
        });
        this.markReady();
        return;
      } catch (error) {
        this.options.log.warn({ err: (error as Error).message }, "projector cannot reach redis; retrying");
        await new Promise((resolve) => setTimeout(resolve, START_RETRY_MS));
      }
    }
  }

  /** The consumer acknowledges the batch once this returns; a crash before that replays it, harmlessly. */
  private async applyBatch(entries: StreamEntries): Promise<void> {
    for (const [streamId, fields] of entries) await this.handle(streamId, fields);
  }

  private async handle(streamId: string, fields: string[]): Promise<void> {
    let entry: StreamEntry;
    try {
      entry = decodeEntry(fields);
    } catch (error) {
      // An entry that does not fit the catalog can never be applied; keep it in the stream, skip it here.
      this.options.log.error({ streamId, err: (error as Error).message }, "unreadable event skipped");
      return;
    }
    if (entry.kind === "announcement") {
      const { announcement } = entry;
      await this.options.db.transaction().execute((trx) => applyAnnouncement(trx, announcement));
      for (const listener of this.listeners) listener(entry);
      return;
    }
    const { event } = entry;
    await this.options.db.transaction().execute(async (trx) => {
      const seen = await trx
        .selectFrom("processed_events")
        .select("event_id")
        .where("event_id", "=", event.id)
        .executeTakeFirst();
      if (seen) return;
      await applyEvent(trx, event);
      await trx
        .insertInto("processed_events")
        .values({ event_id: event.id, stream_id: streamId, applied_at: new Date().toISOString() })
        .execute();
    });
    for (const waiter of this.waiters.get(event.id) ?? []) waiter();
    this.waiters.delete(event.id);
    for (const listener of this.listeners) listener(entry);
  }
}
