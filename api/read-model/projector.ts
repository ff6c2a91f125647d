// Applies the event stream to the read model: a consumer group, one SQLite transaction per event,
// idempotent by event id and forward-only by per-subject sequence, acknowledged after commit.
import type { Redis } from "ioredis";
import type { TypedEvent } from "../../shared/events/catalog.ts";
import { decodeFields, eventStreamKey } from "../../shared/events/stream.ts";
import type { Logger } from "../../shared/logger.ts";
import type { Db } from "../db/database.ts";
import { applyEvent } from "./apply.ts";

export const READ_MODEL_GROUP = "read-model";
const CONSUMER = "api";
const BATCH = 200;
const BLOCK_MS = 1_000;

export interface ProjectorOptions {
  db: Db;
  /** A connection of the worker role (blocking reads); the projector owns and closes nothing else. */
  redis: Redis;
  prefix: string;
  log: Logger;
}

type Entries = Array<[string, string[]]>;

export class Projector {
  private running = false;
  private loop?: Promise<void>;
  private markReady!: () => void;
  /** Resolves once the consumer group exists and the projector is reading. */
  readonly ready = new Promise<void>((resolve) => {
    this.markReady = resolve;
  });
  private readonly waiters = new Map<string, Array<() => void>>();

  constructor(private readonly options: ProjectorOptions) {}

  /** Starts following the stream; returns at once, so the API serves (degraded) while Redis is down. */
  start(): void {
    this.running = true;
    this.loop = this.run();
  }

  /**
   * Stops after the batch in hand; unacknowledged entries are picked up at the next start. Gives up waiting
   * after a blocking read's length (a read stuck on a Redis that is down ends when its connection closes).
   */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.race([this.loop, new Promise((resolve) => setTimeout(resolve, BLOCK_MS + 500).unref())]);
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

  private async isApplied(eventId: string): Promise<boolean> {
    const row = await this.options.db
      .selectFrom("processed_events")
      .select("event_id")
      .where("event_id", "=", eventId)
      .executeTakeFirst();
    return row !== undefined;
  }

  private async ensureGroup(): Promise<void> {
    try {
      await this.options.redis.xgroup("CREATE", eventStreamKey(this.options.prefix), READ_MODEL_GROUP, "0", "MKSTREAM");
    } catch (error) {
      if (!String((error as Error).message).includes("BUSYGROUP")) throw error;
    }
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        await this.ensureGroup();
        this.markReady();
        break;
      } catch (error) {
        this.options.log.warn({ err: (error as Error).message }, "projector cannot reach redis; retrying");
        await new Promise((resolve) => setTimeout(resolve, 1_000));
      }
    }
    // Entries delivered to us before a crash and never acknowledged come first ("0"), then new ones (">").
    let cursor = "0";
    while (this.running) {
      try {
        const entries = await this.read(cursor);
        if (cursor !== ">" && entries.length === 0) {
          cursor = ">";
          continue;
        }
        for (const [streamId, fields] of entries) await this.handle(streamId, fields);
        if (cursor !== ">" && entries.length > 0) cursor = entries.at(-1)![0];
      } catch (error) {
        if (!this.running) break;
        cursor = "0"; // whatever failed is still pending: retry it before anything newer
        this.options.log.warn({ err: (error as Error).message }, "projector read failed; retrying");
        if (String((error as Error).message).includes("NOGROUP")) await this.ensureGroup().catch(() => {});
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    }
  }

  private async read(cursor: string): Promise<Entries> {
    const key = eventStreamKey(this.options.prefix);
    const args: Array<string | number> = ["GROUP", READ_MODEL_GROUP, CONSUMER, "COUNT", BATCH];
    if (cursor === ">") args.push("BLOCK", BLOCK_MS);
    args.push("STREAMS", key, cursor);
    const reply = (await this.options.redis.call("XREADGROUP", ...args)) as Array<[string, Entries]> | null;
    return reply?.[0]?.[1] ?? [];
  }

  private async handle(streamId: string, fields: string[]): Promise<void> {
    let event: TypedEvent;
    try {
      event = decodeFields(fields);
    } catch (error) {
      // An entry that does not fit the catalog can never be applied; keep it in the stream, skip it here.
      this.options.log.error({ streamId, err: (error as Error).message }, "unreadable event skipped");
      await this.ack(streamId);
      return;
    }
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
    await this.ack(streamId);
    for (const waiter of this.waiters.get(event.id) ?? []) waiter();
    this.waiters.delete(event.id);
  }

  private async ack(streamId: string): Promise<void> {
    await this.options.redis.xack(eventStreamKey(this.options.prefix), READ_MODEL_GROUP, streamId);
  }
}
