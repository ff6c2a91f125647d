// Applies the event stream to the read model: a consumer group shared by the API replicas, a few entries per
// transaction (events; a part of a host's announcement, or a host's digest, goes alone), idempotent by event id and
// forward-only by host-owned version, acknowledged after commit. A digest that differs from the read model asks its
// host for the buckets that do (digests.ts). An entry that fails on its own PROJECTOR_MAX_ATTEMPTS times, or cannot be
// decoded, goes to the dead-letter stream and the projector moves on.
import { setImmediate } from "node:timers/promises";
import type { Redis } from "ioredis";
import { sql } from "kysely";
import { decodeEntry, eventStreamKey, type StreamEntry } from "../../shared/events/stream.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Db } from "../db/database.ts";
import { type DialectName, dialectOf } from "../db/dialect.ts";
import { type StreamConsumer, type StreamEntries, startStreamConsumer } from "../stream-consumer.ts";
import { applyChanges, type Change, changeOfEvent, changesOfAnnouncement, type Trx } from "./apply.ts";
import { type DeadLetter, recordDeadLetter } from "./dead-letters.ts";
import { type BucketResync, compareDigest } from "./digests.ts";
import { applyAnnouncementPart } from "./ghosts.ts";

export const READ_MODEL_GROUP = "read-model";
const BLOCK_MS = 1_000;
/** How often a waiter looks for its event in the database (another replica may be the one applying it). */
const WAIT_POLL_MS = 25;
const START_RETRY_MS = 1_000;
const DEFAULT_MAX_APPLY_ATTEMPTS = 5;

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
  /** An entry that fails this many times on its own, the database answering, is dead-lettered (default 5). */
  maxApplyAttempts?: number;
  /** Told of each entry set aside (the dead-letter metric). */
  onDeadLetter?: (letter: Omit<DeadLetter, "id">) => void;
  /** Told of the rows a host's complete announcements lacked twice and that were removed (`instance:<id>`…). */
  onVanished?: (hostId: string, keys: string[]) => void;
  /** Asks a host to announce the buckets of its digest the read model disagrees with (digests.ts); none: nobody. */
  resyncBuckets?: (resync: BucketResync) => Promise<unknown>;
}

/**
 * What one transaction did: the entries that changed the read model, the rows removed as vanished by host, and the
 * buckets to ask of hosts whose digest differs.
 */
interface Applied {
  entries: StreamEntry[];
  vanished: Array<{ hostId: string; keys: string[] }>;
  resyncs: BucketResync[];
}

type StreamItem = { streamId: string; fields: string[]; entry: StreamEntry };

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
   * an error before that replays it, harmlessly (every entry is idempotent). A transaction that fails is re-applied
   * entry by entry, so one poison entry does not take its neighbours with it.
   */
  private async applyBatch(entries: StreamEntries): Promise<void> {
    const perTransaction = ENTRIES_PER_TRANSACTION[dialectOf(this.options.db)];
    let next = 0;
    let failure: unknown;
    while (next < entries.length) {
      const group: StreamItem[] = [];
      while (next < entries.length && group.length < perTransaction) {
        const [streamId, fields] = entries[next]!;
        const entry = await this.decode(streamId, fields);
        // An announcement (up to 200 resources) or a digest (a read of the host's rows) gets a transaction of its own.
        const alone = entry !== undefined && entry.kind !== "event";
        if (alone && group.length > 0) break;
        next++;
        if (entry) group.push({ streamId, fields, entry });
        if (alone) break;
      }
      try {
        this.tell(await this.applyInTransaction(group));
      } catch (error) {
        if (group.length > 1) this.options.log.warn({ err: (error as Error).message }, "re-applying entry by entry");
        for (const item of group) {
          try {
            this.tell(await this.applyInTransaction([item]));
            this.failures.delete(item.streamId);
          } catch (entryError) {
            failure = (await this.setAsideIfPoison(item, entryError)) ? failure : entryError;
          }
        }
      }
      // SQLite answers synchronously: let requests in between transactions, or a burst stalls the event loop.
      await setImmediate();
    }
    // The rest of the batch is applied; what failed is retried with it (the batch stays unacknowledged).
    if (failure !== undefined) throw failure;
    this.setAside.clear();
  }

  /** Failures so far of entries applied alone, by stream position. */
  private readonly failures = new Map<string, number>();
  /** Entries of the batch in hand already dead-lettered (a retry of the batch reads them again). */
  private readonly setAside = new Set<string>();

  private applyInTransaction(group: StreamItem[]): Promise<Applied> {
    if (group.length === 0) return Promise.resolve({ entries: [], vanished: [], resyncs: [] });
    return this.options.db.transaction().execute((trx) => applyGroup(trx, group));
  }

  /**
   * Once committed: waiters and listeners hear of the entries; what vanished is logged and counted; hosts are asked for
   * the buckets their digest differs in (a request that fails is made again from the host's next digest).
   */
  private tell({ entries, vanished, resyncs }: Applied): void {
    for (const resync of resyncs) {
      this.options.log.debug({ ...resync }, "read model: a host's digest differs; asking for its buckets");
      this.options
        .resyncBuckets?.(resync)
        .catch((error: Error) =>
          this.options.log.warn({ hostId: resync.hostId, err: error.message }, "could not ask a host for its buckets"),
        );
    }
    for (const { hostId, keys } of vanished) {
      this.options.log.warn(
        { hostId, removed: keys.slice(0, 50), count: keys.length },
        "read model: removed what two complete announcements of its host lacked (vanished from the host)",
      );
      this.options.onVanished?.(hostId, keys);
    }
    for (const entry of entries) {
      if (entry.kind === "event") for (const waiter of this.waiters.get(entry.event.id) ?? []) waiter();
      for (const listener of this.listeners) listener(entry);
    }
  }

  /**
   * Counts a failure of one entry applied alone; at the limit, dead-letters it and returns true. A failure while
   * the database does not answer at all is the database's, not the entry's, and is not counted.
   */
  private async setAsideIfPoison(item: StreamItem, error: unknown): Promise<boolean> {
    if (!(await this.databaseAnswers())) return false;
    const attempts = (this.failures.get(item.streamId) ?? 0) + 1;
    const limit = this.options.maxApplyAttempts ?? DEFAULT_MAX_APPLY_ATTEMPTS;
    if (attempts < limit) {
      this.failures.set(item.streamId, attempts);
      return false;
    }
    await this.deadLetter(item.streamId, item.fields, attempts, error);
    this.failures.delete(item.streamId);
    return true;
  }

  private async databaseAnswers(): Promise<boolean> {
    try {
      await sql`select 1`.execute(this.options.db);
      return true;
    } catch {
      return false;
    }
  }

  private async deadLetter(streamId: string, fields: string[], attempts: number, error: unknown): Promise<void> {
    if (this.setAside.has(streamId)) return;
    const letter = {
      stream_id: streamId,
      failed_at: new Date().toISOString(),
      attempts,
      error: error instanceof Error ? error.message : String(error),
      fields,
    };
    await recordDeadLetter(this.options.redis, this.options.prefix, letter);
    this.options.log.error({ streamId, attempts, err: letter.error }, "read model: entry dead-lettered");
    this.setAside.add(streamId);
    this.options.onDeadLetter?.(letter);
  }

  /** The entry, or undefined when it does not fit the catalog: it can never be applied, so it is dead-lettered. */
  private async decode(streamId: string, fields: string[]): Promise<StreamEntry | undefined> {
    try {
      return decodeEntry(fields);
    } catch (error) {
      await this.deadLetter(streamId, fields, 1, error);
      return undefined;
    }
  }
}

/**
 * Applies entries inside `trx`; returns those that changed the read model: announcements, and events not applied
 * before; and the buckets of digests that differ. Events are recorded first: a replica applying the same entry at the
 * same time waits on its row, then finds it done.
 */
async function applyGroup(trx: Trx, group: StreamItem[]): Promise<Applied> {
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
    } else if (entry.kind === "event" && recorded.delete(entry.event.id)) {
      // (deleted from the set: the same event twice in one group is applied once)
      applied.push(entry);
      const change = changeOfEvent(entry.event);
      if (change) changes.push(change);
    }
  }
  await applyChanges(trx, changes);
  // Once all its parts are in, a host's announcement also removes what the host no longer has (ghosts.ts).
  const vanished: Applied["vanished"] = [];
  const resyncs: BucketResync[] = [];
  for (const { entry } of group) {
    if (entry.kind === "announcement") {
      const keys = await applyAnnouncementPart(trx, entry.announcement);
      if (keys.length > 0) vanished.push({ hostId: entry.announcement.host_id, keys });
    } else if (entry.kind === "digest") {
      const resync = await compareDigest(trx, entry.digest);
      if (resync) resyncs.push(resync);
    }
  }
  return { entries: applied, vanished, resyncs };
}
