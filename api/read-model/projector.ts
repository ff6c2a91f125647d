// Applies the event stream to the read model: a consumer group shared by the API replicas, a few entries per
// transaction (events; a part of a host's full-state announcement goes alone), idempotent by event id and forward-only
// by host-owned version, acknowledged after commit.
import { setImmediate } from "node:timers/promises";
import type { Redis } from "ioredis";
import { decodeEntry, eventStreamKey, type StreamEntry } from "../../shared/events/stream.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Db } from "../db/database.ts";
import { type DialectName, dialectOf } from "../db/dialect.ts";
import { type StreamConsumer, type StreamEntries, startStreamConsumer } from "../stream-consumer.ts";
import { applyChanges, type Change, changeOfEvent, changesOfAnnouncement, type Trx } from "./apply.ts";

export const READ_MODEL_GROUP = "read-model";
const BLOCK_MS = 1_000;
/** How often a waiter looks for its event in the database (another replica may be the one applying it). */
const WAIT_POLL_MS = 25;
const START_RETRY_MS = 1_000;

/**
 * How many entries one transaction applies (their changes go in a few multi-row statements, apply.ts). SQLite runs
 * on the event loop, so a transaction is time requests wait: 5 entries applied a burst 2.9x faster than one
 * per transaction with the reads' p99 unchanged, 10 and 20 doubled and tripled it (bench:api, 10,000 snapshots).
 * PostgreSQL's statements are I/O the loop does not wait on: 50 entries share a commit and one WAL flush (a burst at
 * 3,500-4,100 events/s against ~400 with six statements per event).
 */
const ENTRIES_PER_TRANSACTION: Record<DialectName, number> = { sqlite: 5, postgres: 50 };

export interface ProjectorOptions {
  db: Db;
  /** A connection of the worker role (blocking reads); the projector owns and closes nothing else. */
  redis: Redis;
  prefix: string;
  log: Logger;
  /** This replica's consumer name in the group (API_REPLICA_ID): replicas share the stream's events. */
  consumer: string;
  /** Entries a dead replica left unacknowledged this long are applied here (STREAM_CLAIM_IDLE_MS). */
  claimIdleMs: number;
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

  /**
   * Resolves once the event has been applied, by this replica or another (at once if it already was); rejects
   * after `timeoutMs`. Looks in the database every WAIT_POLL_MS, sooner when this replica applies the event.
   */
  async waitFor(eventId: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!(await this.isApplied(eventId))) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`event ${eventId} was not projected within ${timeoutMs} ms`);
      await this.appliedHereOrAfter(eventId, Math.min(left, WAIT_POLL_MS));
    }
  }

  private appliedHereOrAfter(eventId: string, ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        const list = this.waiters.get(eventId)?.filter((waiter) => waiter !== done) ?? [];
        if (list.length) this.waiters.set(eventId, list);
        else this.waiters.delete(eventId);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.set(eventId, [...(this.waiters.get(eventId) ?? []), done]);
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
          consumer: this.options.consumer,
          claimIdleMs: this.options.claimIdleMs,
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

  /**
   * Applies a batch read from the stream in transactions of several entries (one commit, and on PostgreSQL one WAL
   * flush, for many events), then tells waiters. The consumer acknowledges the batch once this returns; a crash or
   * an error before that replays it, harmlessly (every entry is idempotent).
   */
  private async applyBatch(entries: StreamEntries): Promise<void> {
    const perTransaction = ENTRIES_PER_TRANSACTION[dialectOf(this.options.db)];
    let next = 0;
    while (next < entries.length) {
      const group: Array<{ streamId: string; entry: StreamEntry }> = [];
      while (next < entries.length && group.length < perTransaction) {
        const [streamId, fields] = entries[next]!;
        const entry = this.decode(streamId, fields);
        // An announcement (up to 200 resources) gets a transaction of its own.
        if (entry?.kind === "announcement" && group.length > 0) break;
        next++;
        if (entry) group.push({ streamId, entry });
        if (entry?.kind === "announcement") break;
      }
      const applied =
        group.length === 0 ? [] : await this.options.db.transaction().execute((trx) => applyGroup(trx, group));
      for (const entry of applied) {
        if (entry.kind === "event") for (const waiter of this.waiters.get(entry.event.id) ?? []) waiter();
        for (const listener of this.listeners) listener(entry);
      }
      // SQLite answers synchronously: let requests in between transactions, or a burst stalls the event loop.
      await setImmediate();
    }
  }

  /** The entry, or undefined (logged) when it does not fit the catalog: it can never be applied, so it is skipped. */
  private decode(streamId: string, fields: string[]): StreamEntry | undefined {
    try {
      return decodeEntry(fields);
    } catch (error) {
      this.options.log.error({ streamId, err: (error as Error).message }, "unreadable event skipped");
      return undefined;
    }
  }
}

/**
 * Applies entries inside `trx`; returns those that changed the read model: announcements, and events not applied
 * before. Events are recorded first: a replica applying the same entry at the same time waits on its row, then finds
 * it done.
 */
async function applyGroup(trx: Trx, group: Array<{ streamId: string; entry: StreamEntry }>): Promise<StreamEntry[]> {
  const events = group.flatMap(({ streamId, entry }) =>
    entry.kind === "event" ? [{ streamId, event: entry.event }] : [],
  );
  const recorded = new Set<string>();
  if (events.length > 0) {
    const appliedAt = new Date().toISOString();
    const rows = await trx
      .insertInto("processed_events")
      .values(events.map(({ streamId, event }) => ({ event_id: event.id, stream_id: streamId, applied_at: appliedAt })))
      .onConflict((conflict) => conflict.column("event_id").doNothing())
      .returning("event_id")
      .execute();
    for (const row of rows) recorded.add(row.event_id);
  }
  const applied: StreamEntry[] = [];
  const changes: Change[] = [];
  for (const { entry } of group) {
    if (entry.kind === "announcement") {
      applied.push(entry);
      changes.push(...changesOfAnnouncement(entry.announcement));
    } else if (recorded.delete(entry.event.id)) {
      // (deleted from the set: the same event twice in one group is applied once)
      applied.push(entry);
      const change = changeOfEvent(entry.event);
      if (change) changes.push(change);
    }
  }
  await applyChanges(trx, changes);
  return applied;
}
