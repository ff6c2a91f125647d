// The durable event stream in Redis: append with a per-subject sequence, read by position.
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import { EVENT_CATALOG, type EventData, type EventType, parseEvent, type TypedEvent } from "./catalog.ts";

export const eventStreamKey = (prefix: string) => `${prefix}:events`;
const sequenceKey = (prefix: string, subject: string) => `${prefix}:event-seq:${subject}`;

/** Approximate cap on the stream's length: old entries are trimmed once every consumer group is far past them. */
export const EVENT_STREAM_MAX_LENGTH = 1_000_000;

// INCR and XADD in one script, so a sequence number is never taken without its event being written.
const APPEND_SCRIPT = `
local sequence = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[1], 'sequence', sequence)
return {id, sequence}
`;

export interface AppendedEvent {
  streamId: string;
  event: TypedEvent;
}

export class EventStream {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  get key(): string {
    return eventStreamKey(this.prefix);
  }

  /** Validates and appends one event; returns its stream position and the envelope as stored. */
  async append<Type extends EventType>(type: Type, subject: string, data: EventData<Type>): Promise<AppendedEvent> {
    const parsedData = EVENT_CATALOG[type].parse(data);
    const envelope = {
      id: `evt_${randomBytes(12).toString("hex")}`,
      type,
      occurred_at: new Date().toISOString(),
      subject,
      data: parsedData,
    };
    const [streamId, sequence] = (await this.redis.eval(
      APPEND_SCRIPT,
      2,
      this.key,
      sequenceKey(this.prefix, subject),
      JSON.stringify(envelope),
      String(EVENT_STREAM_MAX_LENGTH),
    )) as [string, number];
    return { streamId, event: { ...envelope, sequence } as TypedEvent };
  }

  /** Events strictly after `afterId` ("0" for the start), at most `count`. */
  async readAfter(afterId: string, count: number): Promise<Array<{ streamId: string; event: TypedEvent }>> {
    const entries = await this.redis.xrange(this.key, `(${afterId}`, "+", "COUNT", count);
    return entries.map(([streamId, fields]) => ({ streamId, event: decodeFields(fields) }));
  }
}

/** Stream entries hold the JSON envelope in `event` and its per-subject number in `sequence`. */
export function decodeFields(fields: string[]): TypedEvent {
  const values = new Map<string, string>();
  for (let index = 0; index + 1 < fields.length; index += 2) values.set(fields[index]!, fields[index + 1]!);
  const body = values.get("event");
  if (body === undefined) throw new Error("stream entry has no event field");
  return parseEvent({ ...JSON.parse(body), sequence: Number(values.get("sequence")) });
}

export const STREAM_ID_PATTERN = /^\d+-\d+$/;
